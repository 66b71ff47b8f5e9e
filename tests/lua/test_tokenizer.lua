-- Tokenizers from Lua: train a tiny SentencePiece BPE model on generated text, then round trips (whitespace
-- runs, digits, non-Latin text, emoji through byte fallback), BOS/EOS, pieces, a tokenizer.json, and every error.
local pose = require "pose"
local T = require "pose.test"

local dir = T.tmpdir()
local function write(path, s) local f = assert(io.open(path, "wb")); f:write(s); f:close() end

-- ~150 KB of English-like lines with numbers and some accented and Chinese words; no emoji (they must come
-- from byte fallback)
math.randomseed(7)
local words = {"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
               "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you",
               "theorem", "proof", "lemma", "position", "context", "window", "café", "naïve", "中文", "字"}
local lines = {}
for i = 1, 2500 do
  local w = {}
  for j = 1, math.random(4, 14) do w[j] = words[math.random(#words)] end
  if i % 3 == 0 then w[#w + 1] = tostring(math.random(0, 99999)) end
  if i % 7 == 0 then w[#w + 1] = "  " .. words[math.random(#words)] end
  lines[i] = table.concat(w, " ")
end
local corpus = dir .. "/corpus.txt"
write(corpus, table.concat(lines, "\n") .. "\n")

local model = pose.train_tokenizer{input = corpus, model_prefix = dir .. "/spm", vocab_size = 400, num_threads = 2}
local tok

T.case("train and open", function()
  T.eq(model, dir .. "/spm.model")
  tok = pose.tokenizer(model)
  T.eq(tok.kind, "sentencepiece")
  T.eq(tok.vocab_size, 400)
  T.eq(tok.unk_id, 0)
  T.eq(tok.bos_id, 1)
  T.eq(tok.eos_id, 2)
  T.eq(tok.pad_id, -1)
  T.eq(tok.path, model)
  T.eq(tok:piece(1), "<s>")
  T.eq(tok:id("</s>"), 2)
  T.eq(tok:id("no such piece"), nil)
  T.check(tok:id("<0xF0>") ~= nil, "byte_fallback adds the 256 byte pieces")
  T.check(tok:is_special(1) and tok:is_special(0) and not tok:is_special(tok:id("<0x41>")))
  T.check(tostring(tok):find("pose.tokenizer%(sentencepiece") ~= nil)
end)

local function pieces(ids)
  local p = {}
  for i, id in ipairs(ids) do p[i] = tok:piece(id) end
  return p
end

T.case("round trips", function()
  local texts = {
    "the proof of the theorem",
    "a   b\t\tc\n\nd",                       -- whitespace runs, tabs, newlines (newline by byte fallback)
    "  leading and trailing  ",
    "12345 and 0.5e-3",
    "café naïve 中文字 مرحبا بالعالم Ελληνικά",
    "emoji 😀👍🏽 and flags 🇫🇷",
    "e\u{301} combining, \u{200d} zero-width joiner",
    "",
  }
  for _, s in ipairs(texts) do
    T.eq(tok:decode(tok:encode(s)), s, "round trip of " .. ("%q"):format(s))
  end
end)

T.case("digits are split one by one", function()
  local ids = tok:encode("x 9876543210")
  local digits = 0
  for _, p in ipairs(pieces(ids)) do
    T.check(not p:find("%d%d"), "piece '" .. p .. "' holds two digits")
    if p:find("%d") then digits = digits + 1 end
  end
  T.eq(digits, 10)
end)

T.case("emoji through byte fallback", function()
  local ids = tok:encode("😀")
  local p = pieces(ids)
  local bytes = {}
  for _, s in ipairs(p) do
    local hex = s:match("^<0x(%x%x)>$")
    if hex then bytes[#bytes + 1] = string.char(tonumber(hex, 16)) end
  end
  T.eq(table.concat(bytes), "😀", "the four UTF-8 bytes of the emoji")
end)

T.case("bos and eos", function()
  local plain = tok:encode("the lemma")
  local both = tok:encode("the lemma", {bos = true, eos = true})
  T.eq(#both, #plain + 2)
  T.eq(both[1], tok.bos_id)
  T.eq(both[#both], tok.eos_id)
  for i = 1, #plain do T.eq(both[i + 1], plain[i]) end
  T.same(tok:encode("the lemma", {bos = false, eos = false}), plain)
  T.eq(tok:decode(both), "the lemma", "control pieces decode to nothing")
  T.same(tok:encode("the", {bos = true}), {tok.bos_id, table.unpack(tok:encode("the"))})
end)

T.case("decode takes tensors", function()
  local ids = tok:encode("window context")
  T.eq(tok:decode(pose.tensor(ids, "i64")), "window context")
  T.eq(tok:decode(pose.tensor(ids, "i32")), "window context")
  T.eq(tok:decode({}), "")
end)

T.case("a directory holding tokenizer.model", function()
  local d = dir .. "/model_dir"
  os.execute("mkdir -p " .. d)
  local src = assert(io.open(model, "rb")); local data = src:read("a"); src:close()
  write(d .. "/tokenizer.model", data)
  local t2 = pose.tokenizer(d)
  T.eq(t2.kind, "sentencepiece")
  T.same(t2:encode("the proof"), tok:encode("the proof"))
end)

T.case("tokenizer.json from Lua", function()
  -- bytes as ids 0..255 under GPT-2's map (printable ASCII stands for itself; space is U+0120 "Ġ")
  local function gpt2_char(b)
    local function printable(x) return (x >= 33 and x <= 126) or (x >= 0xA1 and x <= 0xAC) or x >= 0xAE end
    if printable(b) then return utf8.char(b) end
    local n = 0
    for x = 0, b - 1 do if not printable(x) then n = n + 1 end end
    return utf8.char(256 + n)
  end
  local function q(s) return '"' .. s:gsub('[\\"]', "\\%0") .. '"' end
  local vocab = {}
  for b = 0, 255 do vocab[#vocab + 1] = q(gpt2_char(b)) .. ":" .. b end
  vocab[#vocab + 1] = q("Ġt") .. ":256"
  vocab[#vocab + 1] = q("he") .. ":257"
  vocab[#vocab + 1] = q("Ġthe") .. ":258"
  local json = '{"added_tokens":[{"id":259,"content":"<|endoftext|>","special":true}],' ..
    '"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},' ..
    '"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{' .. table.concat(vocab, ",") ..
    '},"merges":["Ġ t",["h","e"],"Ġt he"]}}'
  write(dir .. "/gpt2.json", json)
  local t = pose.tokenizer(dir .. "/gpt2.json")
  T.eq(t.kind, "bpe")
  T.eq(t.vocab_size, 260)
  T.eq(t.bos_id, -1)
  T.eq(t.eos_id, 259)
  T.same(t:encode("the the"), {116, 257, 258})
  T.same(t:encode("x<|endoftext|>", {eos = true}), {120, 259, 259})
  T.eq(t:decode({116, 257, 258, 259}), "the the")
  T.eq(t:piece(258), "Ġthe")
  T.eq(t:id("Ġthe"), 258)
  T.eq(t:decode(t:encode("Tabs\tand  spaces 😀 中文")), "Tabs\tand  spaces 😀 中文")
  T.raises(function() t:encode("x", {bos = true}) end, "no BOS token")
end)

T.case("errors", function()
  T.raises(function() pose.tokenizer("/nonexistent/tok.model") end, "/nonexistent/tok.model")
  T.raises(function() pose.tokenizer() end, "bad argument")
  T.raises(function() pose.tokenizer(dir) end, "neither tokenizer.json nor tokenizer.model")
  write(dir .. "/junk.model", "not a model")
  T.raises(function() pose.tokenizer(dir .. "/junk.model") end, "junk.model: not a SentencePiece model")
  T.raises(function() tok:encode({}) end, "bad argument #1 to 'encode'")
  T.raises(function() tok:encode("x", {bogus = true}) end, "unknown option 'bogus' (known: bos, eos)")
  T.raises(function() tok:encode("x", {bos = 1}) end, "'bos' must be a boolean")
  T.raises(function() tok:encode("x", 5) end, "table expected")
  T.raises(function() tok:encode("a\xffb") end, "not valid UTF-8 (byte 0xFF at offset 1)")
  T.raises(function() tok:decode({-1}) end, "id -1 at position 1 is outside the vocabulary [0, 400)")
  T.raises(function() tok:decode({5, 400}) end, "id 400 at position 2 is outside the vocabulary")
  T.raises(function() tok:decode({1.5}) end, "not an integer")
  T.raises(function() tok:decode({{1, 2}}) end, "one-dimensional")
  T.raises(function() tok:decode(pose.tensor({1, 2})) end, "got a f32 tensor")
  T.raises(function() tok:decode() end, "expected ids")
  T.raises(function() tok:piece(400) end, "id 400 is not in the vocabulary")
  T.raises(function() tok:piece(-1) end, "not in the vocabulary")
  T.raises(function() tok.vocab_size = 3 end, "read-only")
  T.raises(function() tok.encode(5, "x") end, "pose.tokenizer expected")
  T.raises(function() pose.train_tokenizer{model_prefix = dir .. "/x"} end, "'input' (a text file or a list of them) is required")
  T.raises(function() pose.train_tokenizer{input = corpus} end, "'model_prefix' (a string) is required")
  T.raises(function() pose.train_tokenizer{input = dir .. "/missing.txt", model_prefix = dir .. "/x"} end,
           "input file '" .. dir .. "/missing.txt' does not exist")
  T.raises(function() pose.train_tokenizer{input = {}, model_prefix = dir .. "/x"} end, "'input' is an empty list")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = dir .. "/x", vocab_sise = 300} end,
           "unknown field name \"vocab_sise\"")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = dir .. "/x", vocab_size = 100000} end,
           "Vocabulary size too high")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = dir .. "/x", vocab_size = "abc"} end,
           "cannot parse \"abc\"")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = dir .. "/x", vocab_size = 300,
                                           user_defined_symbols = {"a,b"}} end, "contains a comma")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = dir .. "/x", num_threads = function() end} end,
           "must be a boolean, number, string or list")
  T.raises(function() pose.train_tokenizer{input = corpus, model_prefix = "/nonexistent/dir/x", vocab_size = 300} end,
           "sentencepiece training")
end)

T.case("training options pass through", function()
  -- a list becomes the trainer's comma-separated repeated flag; user-defined symbols become single pieces
  local m = pose.train_tokenizer{input = {corpus}, model_prefix = dir .. "/spm2", vocab_size = 350, num_threads = 2,
                                 user_defined_symbols = {"<sep>", "<cls>"}, model_type = "bpe"}
  local t = pose.tokenizer(m)
  T.eq(t.vocab_size, 350)
  T.check(t:id("<sep>") ~= nil and t:id("<cls>") ~= nil)
  local ids = t:encode("a<sep>b")
  local found = false
  for _, id in ipairs(ids) do if id == t:id("<sep>") then found = true end end
  T.check(found, "<sep> encodes as one piece")
  T.eq(t:decode(ids), "a<sep>b")
end)

os.execute("rm -rf " .. dir)
T.done("test_tokenizer")
