/* Element types and the scalar conversions between them. bf16 and f16 are stored as raw uint16_t; conversions from
 * f32 round to nearest even, keep NaN a (quiet) NaN, saturate to Inf on overflow as IEEE does, and produce
 * subnormals where the target has them (f16 does; bf16 shares f32's exponent range). */
#ifndef POSE_DTYPE_H
#define POSE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { POSE_F32 = 0, POSE_BF16, POSE_F16, POSE_I32, POSE_I64, POSE_DTYPE_COUNT } pose_dtype;

size_t pose_dtype_size(pose_dtype dt);
const char *pose_dtype_name(pose_dtype dt);
/* Returns 0 and sets *out for "f32","float32","bf16","bfloat16","f16","float16","i32","int32","i64","int64". */
int pose_dtype_parse(const char *name, pose_dtype *out);
int pose_dtype_is_float(pose_dtype dt);

static inline float pose_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}

static inline uint16_t pose_f32_to_bf16(float f) {
  union { uint32_t u; float f; } v;
  v.f = f;
  if ((v.u & 0x7f800000u) == 0x7f800000u && (v.u & 0x007fffffu)) /* NaN: keep sign, force quiet */
    return (uint16_t)((v.u >> 16) | 0x0040u);
  uint32_t lsb = (v.u >> 16) & 1u;
  v.u += 0x7fffu + lsb; /* round to nearest even; overflow carries into Inf as it should */
  return (uint16_t)(v.u >> 16);
}

float pose_f16_to_f32(uint16_t h);
uint16_t pose_f32_to_f16(float f);

/* Converts n elements between any two dtypes (float -> int truncates toward zero, as a C cast). */
void pose_convert(void *dst, pose_dtype dst_dt, const void *src, pose_dtype src_dt, size_t n);

#endif
