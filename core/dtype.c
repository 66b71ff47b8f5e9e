#include "dtype.h"

#include <string.h>

size_t pose_dtype_size(pose_dtype dt) {
  switch (dt) {
    case POSE_F32: case POSE_I32: return 4;
    case POSE_BF16: case POSE_F16: return 2;
    case POSE_I64: return 8;
    default: return 0;
  }
}

const char *pose_dtype_name(pose_dtype dt) {
  static const char *names[] = {"f32", "bf16", "f16", "i32", "i64"};
  return (unsigned)dt < POSE_DTYPE_COUNT ? names[dt] : "?";
}

int pose_dtype_parse(const char *s, pose_dtype *out) {
  static const struct { const char *name; pose_dtype dt; } tab[] = {
      {"f32", POSE_F32},   {"float32", POSE_F32}, {"float", POSE_F32},  {"bf16", POSE_BF16},
      {"bfloat16", POSE_BF16}, {"f16", POSE_F16}, {"float16", POSE_F16}, {"half", POSE_F16},
      {"i32", POSE_I32},   {"int32", POSE_I32},   {"i64", POSE_I64},    {"int64", POSE_I64}};
  for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
    if (strcmp(s, tab[i].name) == 0) { *out = tab[i].dt; return 0; }
  return -1;
}

int pose_dtype_is_float(pose_dtype dt) { return dt == POSE_F32 || dt == POSE_BF16 || dt == POSE_F16; }

float pose_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) u = sign;
    else { /* subnormal: renormalise */
      int e = -1;
      do { man <<= 1; e++; } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t pose_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
  if (exp == 0xff) return sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0); /* Inf or quiet NaN */
  int e = (int)exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00u; /* overflow -> Inf */
  if (e <= 0) {
    /* subnormal or zero in f16: shift the full significand (with its implicit 1) and round to nearest even */
    if (e < -10) return sign;
    uint32_t m = man | 0x800000u;
    int shift = 14 - e; /* 13 bits of mantissa drop, plus the exponent deficit */
    uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1), q = m >> shift;
    if (rest > half || (rest == half && (q & 1u))) q++;
    return sign | (uint16_t)q; /* a carry into bit 10 correctly yields the smallest normal */
  }
  uint32_t q = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (q & 1u))) q++; /* carry may roll into Inf: correct */
  return sign | (uint16_t)q;
}

static double load_one(const void *src, pose_dtype dt, size_t i) {
  switch (dt) {
    case POSE_F32: return ((const float *)src)[i];
    case POSE_BF16: return pose_bf16_to_f32(((const uint16_t *)src)[i]);
    case POSE_F16: return pose_f16_to_f32(((const uint16_t *)src)[i]);
    case POSE_I32: return ((const int32_t *)src)[i];
    case POSE_I64: return (double)((const int64_t *)src)[i];
    default: return 0;
  }
}

void pose_convert(void *dst, pose_dtype ddt, const void *src, pose_dtype sdt, size_t n) {
  if (ddt == sdt) { memcpy(dst, src, n * pose_dtype_size(ddt)); return; }
  if (sdt == POSE_I64 && ddt == POSE_I32) { /* exact path: doubles lose int64 precision */
    for (size_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int32_t)((const int64_t *)src)[i];
    return;
  }
  if (sdt == POSE_I32 && ddt == POSE_I64) {
    for (size_t i = 0; i < n; i++) ((int64_t *)dst)[i] = ((const int32_t *)src)[i];
    return;
  }
  for (size_t i = 0; i < n; i++) {
    /* f32 is the pivot for float targets: bf16/f16 rounding must start from the f32 value, not from a double,
     * or double rounding could differ from torch's single rounding. */
    float f = (sdt == POSE_F32) ? ((const float *)src)[i] : (float)load_one(src, sdt, i);
    switch (ddt) {
      case POSE_F32: ((float *)dst)[i] = f; break;
      case POSE_BF16: ((uint16_t *)dst)[i] = pose_f32_to_bf16(f); break;
      case POSE_F16: ((uint16_t *)dst)[i] = pose_f32_to_f16(f); break;
      case POSE_I32: ((int32_t *)dst)[i] = (int32_t)load_one(src, sdt, i); break;
      case POSE_I64: ((int64_t *)dst)[i] = (int64_t)load_one(src, sdt, i); break;
      default: break;
    }
  }
}
