/* A C view of libsentencepiece (C++), so that the rest of pose stays C11. Every C++ exception is caught inside
 * the shim and every failure comes back as a pose_status with the message set (status.h). */
#ifndef POSE_SPM_SHIM_H
#define POSE_SPM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "status.h" /* a C header without its own extern "C" guard */

typedef struct pose_spm pose_spm;

pose_status pose_spm_load(pose_spm **out, const char *path);
void pose_spm_free(pose_spm *s);

/* *ids malloc'd (caller frees), NULL when *n == 0 */
pose_status pose_spm_encode(const pose_spm *s, const char *text, size_t len, int32_t **ids, size_t *n);
/* ids must lie in [0, piece_size); *text malloc'd and NUL-terminated */
pose_status pose_spm_decode(const pose_spm *s, const int32_t *ids, size_t n, char **text, size_t *len);

int32_t pose_spm_piece_size(const pose_spm *s);
/* id must lie in [0, piece_size); the string lives as long as the model */
const char *pose_spm_id_to_piece(const pose_spm *s, int32_t id, size_t *len);
/* -1 when the piece is not in the vocabulary (SentencePiece itself answers unk_id) */
int32_t pose_spm_piece_to_id(const pose_spm *s, const char *piece, size_t len);
int pose_spm_is_special(const pose_spm *s, int32_t id); /* control or unknown piece */
int32_t pose_spm_bos_id(const pose_spm *s);
int32_t pose_spm_eos_id(const pose_spm *s);
int32_t pose_spm_unk_id(const pose_spm *s);
int32_t pose_spm_pad_id(const pose_spm *s);

/* SentencePieceTrainer::Train with the flags as a key -> value map */
pose_status pose_spm_train(const char *const *keys, const char *const *values, int n);

#ifdef __cplusplus
}
#endif

#endif
