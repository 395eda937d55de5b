/*
 * tests/unit/test_rng.c - core/rng.h: Philox4x32-10 against the known-answer vectors of
 * Random123 (kat_vectors), and the properties the samplers rely on: a uniform is a pure
 * function of (seed, stream, t), in [0, 1), every word of each coordinate matters, and the
 * engine's jb_rng_u01 (the CPU sampling op) is this function.
 */
#include "backend/ops.h"
#include "core/rng.h"
#include "test_common.h"

#include <stdio.h>

/* tests/common's reporting under this file's name */
#define CHECK TC_EXPECT

static void kat(const uint32_t c[4], const uint32_t k[2], const uint32_t want[4])
{
    const struct jb_philox_out o = jb_philox4x32(c[0], c[1], c[2], c[3], k[0], k[1]);
    for (int i = 0; i < 4; i++)
        CHECK(o.v[i] == want[i], "philox word %d: %08x, expected %08x", i, o.v[i], want[i]);
}

int main(void)
{
    const uint32_t z[4] = { 0, 0, 0, 0 }, zk[2] = { 0, 0 };
    const uint32_t w0[4] = { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 };
    kat(z, zk, w0);
    const uint32_t f[4]  = { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff },
                   fk[2] = { 0xffffffff, 0xffffffff };
    const uint32_t w1[4] = { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd };
    kat(f, fk, w1);
    const uint32_t p[4]  = { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 },
                   pk[2] = { 0xa4093822, 0x299f31d0 };
    const uint32_t w2[4] = { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 };
    kat(p, pk, w2);

    /* pure, in range, and sensitive to every coordinate */
    double sum = 0.0;
    int n      = 0;
    for (uint32_t t = 0; t < 2000; t++) {
        const double u = jb_rng_uniform53(42, 3, t);
        CHECK(u >= 0.0 && u < 1.0, "uniform %g out of [0, 1)", u);
        CHECK(u == jb_rng_uniform53(42, 3, t) && u == jb_rng_u01(42, 3, t), "not a pure function");
        CHECK(u != jb_rng_uniform53(43, 3, t) && u != jb_rng_uniform53(42, 4, t) &&
                u != jb_rng_uniform53(42, 3, t + (1ULL << 32)) &&
                u != jb_rng_uniform53(42, 3 + (1ULL << 32), t),
              "a coordinate did not change the draw at t=%u",
              t);
        sum += u;
        n++;
    }
    CHECK(sum / n > 0.47 && sum / n < 0.53, "mean of 2000 uniforms %g", sum / n);
    /* the high seed word matters too */
    CHECK(jb_rng_uniform53(1, 0, 0) != jb_rng_uniform53(1 | (1ULL << 40), 0, 0),
          "seed bits above 32 ignored");
    printf("rng: Philox4x32-10 known answers and draw properties\n");
    return tc_summary();
}
