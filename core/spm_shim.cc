// The only C++ in libpose: a thin C API over libsentencepiece. SentencePiece reports failures as util::Status
// values; allocation failures and anything else thrown are caught here, so no exception crosses into C.
#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

struct pose_spm {
  sentencepiece::SentencePieceProcessor proc;
  std::string path;
};

namespace {

pose_status from_exception(const char *what) {
  try {
    throw;
  } catch (const std::bad_alloc &) {
    return pose_error(POSE_ENOMEM, "%s: out of memory", what);
  } catch (const std::exception &e) {
    return pose_error(POSE_EFORMAT, "%s: %s", what, e.what());
  } catch (...) {
    return pose_error(POSE_EFORMAT, "%s: unknown C++ exception", what);
  }
}

bool io_failure(const sentencepiece::util::Status &st) {
  return st.code() == sentencepiece::util::StatusCode::kPermissionDenied ||
         st.ToString().find("No such file") != std::string::npos;
}

}  // namespace

extern "C" pose_status pose_spm_load(pose_spm **out, const char *path) {
  *out = nullptr;
  pose_spm *s = nullptr;
  try {
    s = new pose_spm();
    s->path = path;
    const auto st = s->proc.Load(path);
    if (!st.ok()) {
      pose_status code = io_failure(st) ? POSE_EIO : POSE_EFORMAT;
      pose_error(code, "%s: not a SentencePiece model (%s)", path, st.ToString().c_str());
      delete s;
      return code;
    }
    *out = s;
    return POSE_OK;
  } catch (...) {
    delete s;
    return from_exception(path);
  }
}

extern "C" void pose_spm_free(pose_spm *s) { delete s; }

extern "C" pose_status pose_spm_encode(const pose_spm *s, const char *text, size_t len, int32_t **ids, size_t *n) {
  *ids = nullptr;
  *n = 0;
  try {
    std::vector<int> v;
    const auto st = s->proc.Encode(absl::string_view(text, len), &v);
    if (!st.ok()) return pose_error(POSE_EINVAL, "%s: encode: %s", s->path.c_str(), st.ToString().c_str());
    if (v.empty()) return POSE_OK;
    int32_t *buf = static_cast<int32_t *>(std::malloc(v.size() * sizeof(int32_t)));
    if (!buf) return pose_error(POSE_ENOMEM, "%s: encode: out of memory", s->path.c_str());
    for (size_t i = 0; i < v.size(); i++) buf[i] = v[i];
    *ids = buf;
    *n = v.size();
    return POSE_OK;
  } catch (...) {
    return from_exception("sentencepiece encode");
  }
}

extern "C" pose_status pose_spm_decode(const pose_spm *s, const int32_t *ids, size_t n, char **text, size_t *len) {
  *text = nullptr;
  if (len) *len = 0;
  try {
    std::vector<int> v(ids, ids + n);
    std::string out;
    const auto st = s->proc.Decode(v, &out);
    if (!st.ok()) return pose_error(POSE_EINVAL, "%s: decode: %s", s->path.c_str(), st.ToString().c_str());
    char *buf = static_cast<char *>(std::malloc(out.size() + 1));
    if (!buf) return pose_error(POSE_ENOMEM, "%s: decode: out of memory", s->path.c_str());
    std::memcpy(buf, out.data(), out.size());
    buf[out.size()] = 0;
    *text = buf;
    if (len) *len = out.size();
    return POSE_OK;
  } catch (...) {
    return from_exception("sentencepiece decode");
  }
}

extern "C" int32_t pose_spm_piece_size(const pose_spm *s) { return s->proc.GetPieceSize(); }

extern "C" const char *pose_spm_id_to_piece(const pose_spm *s, int32_t id, size_t *len) {
  const std::string &p = s->proc.IdToPiece(id);
  *len = p.size();
  return p.data();
}

extern "C" int32_t pose_spm_piece_to_id(const pose_spm *s, const char *piece, size_t len) {
  try {
    const absl::string_view want(piece, len);
    const int id = s->proc.PieceToId(want);
    // SentencePiece answers unk_id for a piece it does not know: tell that apart from the unknown piece itself.
    if (id < 0 || absl::string_view(s->proc.IdToPiece(id)) != want) return -1;
    return id;
  } catch (...) {
    return -1;
  }
}

extern "C" int pose_spm_is_special(const pose_spm *s, int32_t id) {
  return s->proc.IsControl(id) || s->proc.IsUnknown(id);
}
extern "C" int32_t pose_spm_bos_id(const pose_spm *s) { return s->proc.bos_id(); }
extern "C" int32_t pose_spm_eos_id(const pose_spm *s) { return s->proc.eos_id(); }
extern "C" int32_t pose_spm_unk_id(const pose_spm *s) { return s->proc.unk_id(); }
extern "C" int32_t pose_spm_pad_id(const pose_spm *s) { return s->proc.pad_id(); }

extern "C" pose_status pose_spm_train(const char *const *keys, const char *const *values, int n) {
  // The trainer keeps global state (flags, log level): one training at a time per process.
  static std::mutex mu;
  try {
    std::lock_guard<std::mutex> lock(mu);
    std::unordered_map<std::string, std::string> kw;
    for (int i = 0; i < n; i++) kw[keys[i]] = values[i];
    const auto st = sentencepiece::SentencePieceTrainer::Train(kw);
    if (!st.ok())
      return pose_error(io_failure(st) ? POSE_EIO : POSE_EINVAL, "sentencepiece training: %s", st.ToString().c_str());
    return POSE_OK;
  } catch (...) {
    return from_exception("sentencepiece training");
  }
}
