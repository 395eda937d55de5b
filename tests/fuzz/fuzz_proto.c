/*
 * tests/fuzz/fuzz_proto.c - libFuzzer target for the wire protocol: the input is cut into
 * pieces (sizes from its first byte) and fed to an ep_reader as a socket would deliver it;
 * every message that decodes has all its fields read back through the typed getters, and is
 * re-encoded and decoded again (round trip must succeed).
 */
#include "encore_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *keys[] = {
    "type",  "version", "mode", "seconds",      "artist", "lyrics", "pcm",
    "codes", "sets",    "jobs", "capabilities", "tag",    "job",    "rate"
};

static void exercise(const struct ep_msg *m)
{
    char buf[128];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int64_t v;
        double d;
        bool b;
        size_t n;
        (void)ep_msg_get_int(m, keys[i], &v);
        (void)ep_msg_get_double(m, keys[i], &d);
        (void)ep_msg_get_bool(m, keys[i], &b);
        (void)ep_msg_get_strbuf(m, keys[i], buf, sizeof buf);
        free(ep_msg_dup_str(m, keys[i], 1 << 20));
        (void)ep_msg_get_bytes(m, keys[i], &n);
        free(ep_msg_get_f32(m, keys[i], 1 << 20, &n));
        free(ep_msg_get_i32(m, keys[i], 1 << 20, &n));
        size_t len = ep_msg_list_len(m, keys[i]);
        for (size_t k = 0; k < len && k < 64; k++) {
            struct ep_msg *it = ep_msg_list_item(m, keys[i], k);
            if (it) {
                (void)ep_msg_get_int(it, "job", &v);
                ep_msg_free(it);
            }
            (void)ep_msg_list_str(m, keys[i], k, buf, sizeof buf);
        }
    }
    /* what decodes must encode and decode again */
    uint8_t *f;
    size_t n;
    if (ep_msg_encode(m, 0, &f, &n)) {
        struct ep_msg *again = ep_msg_decode(f + EP_FRAME_HEADER, n - EP_FRAME_HEADER, NULL, 0);
        if (!again) abort();
        ep_msg_free(again);
        free(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const size_t piece = 1 + data[0] % 64;
    data++, size--;
    struct ep_reader r;
    ep_reader_init(&r, 1 << 16);
    for (size_t at = 0; at < size; at += piece) {
        if (!ep_reader_feed(&r, data + at, size - at < piece ? size - at : piece)) break;
        for (;;) {
            struct ep_msg *m = NULL;
            char why[128];
            enum ep_read_result res = ep_reader_next(&r, &m, why, sizeof why);
            if (res == EP_READ_MSG) {
                exercise(m);
                ep_msg_free(m);
                continue;
            }
            if (res == EP_READ_BAD_FRAME) goto out;
            if (res == EP_READ_MORE) break;
        }
    }
out:
    ep_reader_free(&r);
    /* the whole input as one payload, too */
    struct ep_msg *m = ep_msg_decode(data, size, NULL, 0);
    if (m) exercise(m);
    ep_msg_free(m);
    return 0;
}
