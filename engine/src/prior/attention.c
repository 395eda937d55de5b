/*
 * prior/attention.c - the factorised attention of the priors (jukebox-spec §4.6, §5.2) as a
 * schedule of backend ops: KV-cache append and attention of each layer's kind (cache layouts and
 * key sets: backend/ops.h; kernels: backend/cpu/cpu_attention.c).
 *
 * A chunk of new positions is handled in block-aligned segments for funcs 1 and 3 (append the
 * segment's keys, then answer its queries), so a ring slot is only overwritten after every
 * query that reads it has been answered; for the other funcs nothing is ever overwritten and
 * the whole chunk is appended first. Causality inside a chunk comes from the key sets. The
 * full-sequence forward is this code with one chunk of T positions, i.e. blocked attention.
 */
#include "prior/prior_impl.h"

int32_t jb_kv_cache_capacity(const struct jb_transformer *tr, int func)
{
    return jb_kv_capacity(func, tr->seq_len, tr->block_ctx, tr->enc_len, tr->prime_len);
}

void jb_attention_set_encoder(struct jb_backend *be,
                              const struct jb_transformer *tr,
                              struct jb_kv_cache *c,
                              int n_batch,
                              const float *kv)
{
    const int64_t ns = tr->n_state;
    jb_kv_append(be, &tr->attn, c, n_batch, c->cap, 0, 0, c->cap, kv, kv + ns, 2 * ns);
}

void jb_attention_chunk(struct jb_backend *be,
                        const struct jb_transformer *tr,
                        struct jb_kv_cache *c,
                        int N,
                        int64_t S,
                        int C,
                        const int32_t *pos,
                        const float *qkv,
                        float *att)
{
    const int64_t B = tr->block_ctx, ns = tr->n_state;
    const int64_t ldq            = c->func == 6 ? ns : 3 * ns;
    const struct jb_attn_desc *a = &tr->attn;

    if (pos) { /* decode at the device position: one row, one segment of every kind */
        JB_ASSERT(C == 1);
        if (c->func != 6) jb_kv_append_at(be, a, c, N, pos, qkv + ns, qkv + 2 * ns, ldq);
        jb_attention_at(be, a, c, N, pos, qkv, ldq, att, ns);
        return;
    }

    switch (c->func) {
    case 1:
    case 3:
        /* block-aligned segments: a ring slot is reused only after its readers are done */
        for (int r0 = 0; r0 < C;) {
            int r1 = r0 + (int)(B - (S + r0) % B);
            if (r1 > C) r1 = C;
            jb_kv_append(be, a, c, N, C, S, r0, r1, qkv + ns, qkv + 2 * ns, ldq);
            jb_attention(be, a, c, N, C, S, r0, r1, qkv, ldq, att, ns);
            r0 = r1;
        }
        break;
    case 6:
        jb_attention(be, a, c, N, C, S, 0, C, qkv, ldq, att, ns);
        break;
    default:
        jb_kv_append(be, a, c, N, C, S, 0, C, qkv + ns, qkv + 2 * ns, ldq);
        jb_attention(be, a, c, N, C, S, 0, C, qkv, ldq, att, ns);
        break;
    }
}
