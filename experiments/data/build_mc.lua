-- Builds a small multiple-choice set honestly from held-out text: "which sentence comes next?". For each item the
-- context is a run of consecutive sentences from a held-out speech, the gold choice is the sentence that really
-- follows, and the distractors are sentences of similar length drawn from the other held-out speeches. Writes JSONL
-- in pose.eval's generic format ({"context", "choices", "gold"}, gold 0-based).
--
--   build/pose run experiments/data/build_mc.lua [--src experiments/data/quickstart/heldout] [--n 200] [--seed 1]
local pose = require "pose"
local o = pose.args.merge(..., {src = "experiments/data/quickstart/heldout", out = "experiments/data/mc/sotu_next_sentence.jsonl",
                                n = 200, choices = 4, context_sentences = 3, seed = 1}, "build_mc")

local function sentences(text)
  local out = {}
  -- a sentence ends at . ! or ? followed by a space and a capital letter; good enough for formal prose
  local start = 1
  for stop in text:gmatch("()[%.!?]%s+%u") do
    local s = text:sub(start, stop):gsub("^%s+", "")
    if #s >= 20 then out[#out + 1] = s end
    start = stop + 1
  end
  return out
end

local files = {}
local p = io.popen("ls " .. o.src .. "/*.txt")
for l in p:lines() do files[#files + 1] = l end
p:close()
table.sort(files)
assert(#files >= 2, "build_mc: need at least two held-out documents in " .. o.src)
local docs = {}
for i, f in ipairs(files) do
  local h = assert(io.open(f, "rb"))
  docs[i] = sentences(h:read("a"))
  h:close()
end

local state = o.seed * 7919 + 1
local function rand(k) state = (state * 48271) % 2147483647; return state % k + 1 end
local out = assert(io.open(o.out, "w"))
local made = 0
while made < o.n do
  local d = rand(#docs)
  local sents = docs[d]
  local i = rand(#sents - o.context_sentences) + o.context_sentences - 1
  if i + 1 <= #sents then
    local context = table.concat(sents, " ", i - o.context_sentences + 1, i)
    local gold_text = sents[i + 1]
    local choices = {gold_text}
    local tries = 0
    while #choices < o.choices and tries < 1000 do
      tries = tries + 1
      local od = rand(#docs)
      if od ~= d then
        local cand = docs[od][rand(#docs[od])]
        -- similar length (within 30%) so that length alone does not give the answer away
        if math.abs(#cand - #gold_text) <= 0.3 * #gold_text then choices[#choices + 1] = cand end
      end
    end
    if #choices == o.choices then
      -- shuffle, remembering where the gold went
      local gold = 1
      for k = #choices, 2, -1 do
        local j = rand(k)
        choices[k], choices[j] = choices[j], choices[k]
        if gold == k then gold = j elseif gold == j then gold = k end
      end
      for k = 1, #choices do choices[k] = " " .. choices[k] end
      out:write(pose.json_encode({context = context, choices = choices, gold = gold - 1}), "\n")
      made = made + 1
    end
  end
end
out:close()
print(string.format("build_mc: wrote %d items to %s", made, o.out))
