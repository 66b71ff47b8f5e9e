-- Corpus builder: the text helpers (roff, OSIS, R serialisation, records, UTF-8), and an end-to-end build of the
-- committed quickstart text (no download): sets, tokenizer, shards, report, quiet rerun, user JSONL/text with an
-- existing tokenizer, the travel pack and its unpacker, and the clear failure on an unknown source.
local T = require "pose.test"
package.path = "experiments/data/?.lua;" .. package.path
local X = require "corpus_text"
local dir = T.tmpdir()
local POSE = (os.getenv("POSE_BUILD_DIR") or "build") .. "/pose"

if not (os.execute("command -v spm_train >/dev/null 2>&1") or pose.train_tokenizer) then
  T.skip("neither pose.train_tokenizer nor spm_train (Debian package sentencepiece) is available")
end

T.case("roff to text", function()
  local roff = table.concat({
    '.\\" a comment', ".TH OPEN 2 2022-10-30", ".SH NAME", "open \\- open a file", ".SH SYNOPSIS", ".nf",
    "int open(const char *p);", "int creat(void);", ".fi", ".SH DESCRIPTION", "The", ".BR open ()",
    "call opens", ".I pathname .", ".PP", "Second \\fBparagraph\\fP \\(em done.", ".TS", "l l.", "a\tb", ".TE"}, "\n")
  T.eq(X.roff_to_text(roff), table.concat({
    "OPEN(2)", "", "NAME", "open - open a file", "", "SYNOPSIS", "int open(const char *p);", "int creat(void);",
    "", "DESCRIPTION", "The open() call opens pathname .", "", "Second paragraph — done.", "", "a\tb"}, "\n"))
  T.eq(X.roff_to_text(".so man3/other.3\n"), "", "a redirection is no document")
end)

T.case("OSIS to text", function()
  local osis = '<chapter n="1" osisID="Ps.1"/><title type="x-s">Psalm 1</title> <div sID="g1" type="x-p"/>' ..
               'Blessed &amp; <hi type="italic">happy</hi>.<div eID="g1" type="x-p"/> &#8220;Q&#8221;'
  T.eq(X.osis_to_text(osis), "Psalm 1\n\nBlessed & happy.\n“Q”")
end)

T.case("R serialised character vector", function()
  local function i4(n) return string.pack(">i4", n) end
  local blob = "X\n" .. i4(3) .. i4(0x40200) .. i4(0x30500) .. i4(5) .. "UTF-8" .. i4(16) .. i4(3) ..
               i4(0x40009) .. i4(5) .. "Hello" .. i4(9) .. i4(-1) .. i4(0x40009) .. i4(2) .. "ok"
  T.same(X.r_strings(blob), {"Hello", "", "ok"})
  T.eq(X.r_strings("X\n" .. i4(2) .. i4(0) .. i4(0) .. i4(19) .. i4(0)), nil, "not a character vector")
end)

T.case("records, UTF-8, JSON", function()
  local p = dir .. "/x.docs"
  local w = X.doc_writer(p)
  w.add("two\nlines\n", "train", "a:b")
  w.add("", "gov", "c")
  w.add("#doc 3 x y\nz", "book", "d e")
  w.close()
  local got = {}
  for text, set, src in X.each_doc(p) do got[#got + 1] = {text, set, src} end
  T.same(got, {{"two\nlines\n", "train", "a:b"}, {"", "gov", "c"}, {"#doc 3 x y\nz", "book", "d e"}})
  T.eq(X.clean_utf8("ok é"), "ok é")
  T.eq(X.clean_utf8("a\xff\xfeb"), "a\u{FFFD}\u{FFFD}b")
  T.eq(X.json({b = {1, 2}, a = "x\n\"y\""}), '{\n  "a": "x\\n\\"y\\"",\n  "b": [1, 2]\n}')
  T.eq(X.tidy("\n\na  \n\n\n\nb\t\n\n"), "a\n\nb")
end)

local function run(args, capture)
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local ok = os.execute(POSE .. " run experiments/data/build_corpus.lua " .. args .. " >" .. out .. " 2>" .. err)
  return ok == true, X.read(out), X.read(err)
end

T.case("end to end on the quickstart text", function()
  local out = dir .. "/qs"
  local ok, stdout, stderr = run("--out " .. out .. " --sources quickstart --vocab 800 --spm-mb 2 --travel-pack " ..
                                 "--travel-tokens 100000")
  T.check(ok, "build succeeded: " .. stderr)
  if not ok then return end
  T.check(stderr:find("extracted quickstart     37 documents", 1, true) ~= nil, "extract logged")
  T.check(stdout:find("| train | 33 |", 1, true) ~= nil, "report lists the train set")
  local tr, gov = pose.shards(out .. "/shards/train-000.shard"), pose.shards(out .. "/shards/gov-000.shard")
  T.eq(tr:num_docs(), 33); T.eq(gov:num_docs(), 4)
  T.eq(tr:vocab_size(), 800); T.eq(tr:eos_id(), 2)
  T.check(tr:check(), "tokens inside the vocabulary")
  T.check(gov:source(1):find("^quickstart:heldout/") ~= nil, "held-out source names")
  T.check(gov:num_tokens() > 100000, "held-out tokens")
  T.check(X.exists(out .. "/REPORT.md") and X.exists(out .. "/manifest.json"), "report files")
  -- rerun: nothing to do, nothing said
  ok, stdout, stderr = run("--out " .. out .. " --sources quickstart --vocab 800 --spm-mb 2 --travel-pack " ..
                           "--travel-tokens 100000")
  T.check(ok, "rerun succeeded"); T.eq(stderr, "", "quiet about finished stages")
  -- a changed option redoes what depends on it
  ok, _, stderr = run("--out " .. out .. " --sources quickstart --vocab 800 --spm-mb 2 --shard-tokens 200000")
  T.check(ok and stderr:find("shards train") ~= nil and not stderr:find("extracted"), "only the shard stage redone")
  T.eq(pose.shards(out .. "/shards/train-000.shard"):num_docs() < 33, true, "smaller shards")
  -- travel pack: the train subset is whole documents of about the budget; unpack and compare
  local up = dir .. "/unpacked"
  T.check(os.execute(POSE .. " run experiments/data/unpack_travel.lua --pack " .. out .. "/travel --out " .. up ..
                     " >/dev/null 2>&1") == true, "unpack")
  local tt = pose.shards(up .. "/train.shard")
  T.check(tt:num_tokens() >= 100000 and tt:num_docs() < 33, "travel train subset")
  local g2 = pose.shards(up .. "/gov-000.shard")
  T.same(g2:doc(1, {table = true}), gov:doc(1, {table = true}), "held-out shard travels whole")
  -- user data through the same path with the tokenizer just built
  local jl = dir .. "/u.jsonl"
  local f = io.open(jl, "w")
  f:write('{"text": "A user document that is long enough to be kept by the minimum length filter of the builder, which is one hundred bytes."}\n')
  f:write('{"text": "A user document that is long enough to be kept by the minimum length filter of the builder, which is one hundred bytes."}\n')
  f:close()
  ok, _, stderr = run("--out " .. dir .. "/user --jsonl " .. jl .. " --text experiments/data/quickstart/heldout " ..
                      "--tokenizer " .. out .. "/tokenizer.model --user-set mine")
  T.check(ok, "user build: " .. stderr)
  local u = pose.shards(dir .. "/user/shards/mine-000.shard")
  T.eq(u:num_docs(), 5, "4 files + 1 JSONL record (its duplicate dropped)")
  T.eq(u:source(1), jl .. ":1")
  -- the same tokens as the quickstart build, up to the end (user text is kept as is, the builder's own is tidied)
  local a, b = u:doc(5, {table = true}), gov:doc(4, {table = true})
  local same = #a >= #b - 1
  for k = 1, #b - 2 do same = same and a[k] == b[k] end
  T.check(same, "same tokens as the quickstart build")
  -- the spm_encode path (line by line, joined with the newline piece) gives the same shards as pose.tokenizer
  if pose.tokenizer and os.execute("command -v spm_encode >/dev/null 2>&1") then
    local ml = dir .. "/ml.jsonl"
    local g = io.open(ml, "w")
    g:write('{"text": "let rec f x =\\n  match x with\\n\\n  | 0 -> 1   \\n\\t| n -> n * f (n - 1)\\n\\n\\n(* the end *)\\n"}\n')
    g:close()
    local args = "--sources quickstart --jsonl " .. ml .. " --min-bytes 10 --tokenizer " .. out ..
                 "/tokenizer.model --shard-tokens 10000000 "
    local ok1 = run("--out " .. dir .. "/e1 " .. args)
    local ok2 = run("--out " .. dir .. "/e2 --spm-binaries " .. args)
    T.check(ok1 and ok2, "both engines ran")
    for _, name in ipairs({"train-000.shard", "gov-000.shard"}) do
      T.eq(X.read(dir .. "/e1/shards/" .. name), X.read(dir .. "/e2/shards/" .. name), "identical " .. name)
    end
    T.check(X.read(dir .. "/e2/REPORT.md"):find("encoded with spm_encode", 1, true) ~= nil, "binary engine used")
  end
end)

T.case("failures are clear", function()
  local ok, _, stderr = run("--out " .. dir .. "/bad --sources nosuch")
  T.check(not ok and stderr:find("unknown source 'nosuch'", 1, true) ~= nil, "unknown source: " .. stderr)
  ok, _, stderr = run("--out " .. dir .. "/bad --jsonl " .. dir .. "/missing.jsonl")
  T.check(not ok and stderr:find("cannot read", 1, true) ~= nil, "missing JSONL")
  ok, _, stderr = run("--out " .. dir .. "/bad --sources quickstart --redo everything")
  T.check(not ok and stderr:find("unknown --redo stage", 1, true) ~= nil, "bad --redo")
  ok, _, stderr = run("--out " .. dir .. "/bad --sources quickstart --vocab many")
  T.check(not ok and stderr:find("expects a number", 1, true) ~= nil, "bad number")
end)

os.execute("rm -rf " .. dir)
T.done("test_corpus")
