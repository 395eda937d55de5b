/*
 * backend/ops_common.c - backend-independent parts of the op interface: KV-cache geometry and the
 * sampler's counter-based random numbers (every backend computes the same ones).
 */
#include "backend/ops.h"
#include "core/rng.h"

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

double jb_rng_u01(uint64_t seed, uint64_t stream, uint64_t t)
{
    return jb_rng_uniform53(seed, stream, t); /* core/rng.h: the same code on the GPU */
}
