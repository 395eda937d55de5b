/*
 * backend/ops_common.c - backend-independent parts of the op interface: KV-cache geometry and the
 * sampler's counter-based random numbers (every backend computes the same ones).
 */
#include "backend/ops.h"

int32_t jb_kv_capacity(int func, int32_t seq_len, int32_t block_ctx, int32_t enc_len, int32_t P)
{
    const int32_t B = block_ctx, T = seq_len;
    switch (func) {
    case 0:
        return T;
    case 1:
        return B;
    case 2:
        return ((T + B - 1) / B) * B;
    case 3:
        return 2 * B;
    case 6:
        return enc_len;
    case 7:
        return P;
    default:
        return 0;
    }
}

int64_t jb_attn_max_keys(int func, int32_t seq_len, int32_t block_ctx, int32_t cap)
{
    return func == 2 ? (seq_len + block_ctx - 1) / block_ctx : cap;
}

/* Philox4x32-10: ten rounds of the counter-based generator of Salmon, Moraes, Dror and Shaw
 * (SC'11), as in cuRAND and Random123. */
static void philox4x32_10(uint32_t ctr[4], uint32_t key[2])
{
    for (int r = 0; r < 10; r++) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
        const uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        const uint32_t c0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ key[0];
        const uint32_t c2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ key[1];
        ctr[1]            = (uint32_t)p1;
        ctr[3]            = (uint32_t)p0;
        ctr[0]            = c0;
        ctr[2]            = c2;
        key[0] += 0x9E3779B9u;
        key[1] += 0xBB67AE85u;
    }
}

double jb_rng_u01(uint64_t seed, uint64_t stream, uint64_t t)
{
    uint32_t ctr[4] = {
        (uint32_t)t, (uint32_t)(t >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)
    };
    uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    philox4x32_10(ctr, key);
    const uint64_t bits = ((uint64_t)ctr[0] << 32 | ctr[1]) >> 11;
    return (double)bits * 0x1.0p-53;
}
