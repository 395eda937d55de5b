/* format/hparams.c - derived hyper-parameters and the attention layer patterns (spec §4.7). */
#include "format/hparams.h"

int32_t jb_vqvae_hp_width(const struct jb_vqvae_hparams *hp, int level)
{
    return hp->width * hp->multipliers[level];
}

int32_t jb_vqvae_hp_depth(const struct jb_vqvae_hparams *hp, int level)
{
    return hp->depth * hp->multipliers[level];
}

int32_t jb_vqvae_hp_hop(const struct jb_vqvae_hparams *hp, int level)
{
    int32_t hop = 1;
    for (int l = 0; l <= level; l++)
        for (int i = 0; i < hp->downs_t[l]; i++)
            hop *= hp->strides_t[l];
    return hop;
}

int jb_attn_func(int attn_order, int d)
{
    static const int o10[79] = {
        1, 2, 3, 1, 2, 3, 1, 2, 3,                                           /* (1,2,3) x 3 */
        1, 2, 3, 1, 2, 3, 1, 2, 3, 6, 1, 2, 3, 1, 2, 3, 1, 2, 3, 6, 1, 2, 3, /* 7 groups of */
        1, 2, 3, 1, 2, 3, 6, 1, 2, 3, 1, 2, 3, 1, 2, 3, 6, 1, 2, 3, 1, 2, 3, /* (1,2,3)x3,6 */
        1, 2, 3, 6, 1, 2, 3, 1, 2, 3, 1, 2, 3, 6, 1, 2, 3, 1, 2, 3, 1, 2, 3, 6
    };
    if (d < 0) return -1;
    switch (attn_order) {
    case 0:
        return 0;
    case 1:
        return (int[]){ 1, 2 }[d % 2];
    case 2:
        return (int[]){ 1, 2, 3 }[d % 3];
    case 3:
        return (int[]){ 1, 4 }[d % 2];
    case 4:
        return (int[]){ 1, 5 }[d % 2];
    case 5:
        return (int[]){ 1, 4, 1, 1 }[d % 4];
    case 6:
        return (int[]){ 1, 2, 3, 6 }[d % 4];
    case 7:
        return (d % 16 == 15) ? 6 : (int[]){ 1, 2, 3 }[(d % 16) % 3];
    case 8:
        return (int[]){ 1, 2, 3, 1, 2, 3, 1, 2, 3, 6 }[d % 10];
    case 9:
        return (int[]){ 1, 2, 3, 0 }[d % 4];
    case 10:
        return o10[d % 79];
    case 11:
        return (d % 16 == 15) ? (int[]){ 6, 6, 0 }[d % 3] : (int[]){ 1, 2, 3 }[d % 3];
    case 12:
        return (d % 16 == 15) ? (int[]){ 7, 7, 0 }[d % 3] : (int[]){ 1, 2, 3 }[d % 3];
    default:
        return -1;
    }
}
