/*
 * core/fp16.h - IEEE binary16 and bfloat16 conversions, round-to-nearest-even, NaN-preserving.
 */
#ifndef JB_CORE_FP16_H
#define JB_CORE_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t jb_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float jb_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float jb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp  = (h >> 10) & 0x1f;
    uint32_t man  = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return jb_bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return jb_bits_f32(sign | 0x7f800000u | (man << 13));
    return jb_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t jb_f32_to_f16(float f)
{
    uint32_t x    = jb_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 |
                          (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (absx < 0x38800000u) {                                  /* subnormal or zero in f16 */
        /* round(abs * 2^24) with ties to even, via float arithmetic on exact values */
        float a    = jb_bits_f32(absx) * 16777216.0f; /* exact: power-of-two scaling */
        uint32_t i = (uint32_t)a;
        float r    = a - (float)i;
        if (r > 0.5f || (r == 0.5f && (i & 1))) i++;
        return (uint16_t)(sign | i);
    }
    uint32_t e    = ((absx >> 23) - 112) << 10;
    uint32_t m    = (absx >> 13) & 0x3ff;
    uint32_t rest = absx & 0x1fff;
    uint32_t h    = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float jb_bf16_to_f32(uint16_t b)
{
    return jb_bits_f32((uint32_t)b << 16);
}

static inline uint16_t jb_f32_to_bf16(float f)
{
    uint32_t x = jb_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

#endif
