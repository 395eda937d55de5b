/* tests/unit/test_proto.c - the wire protocol library: messages round-trip, frames arrive in
 * any pieces, and hostile payloads are refused with a reason (never a crash). */
#include "encore_proto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static struct ep_msg *sample_msg(void)
{
    struct ep_msg *m = ep_msg_new("submit");
    float pcm[5]     = { 0.5f, -0.25f, 1e-30f, 0, -1 };
    int32_t codes[3] = { 1, -2, 2047 };
    ep_msg_set_int(m, "seed", -12345678901LL);
    ep_msg_set_int(m, "candidates", 3);
    ep_msg_set_double(m, "seconds", 2.5);
    ep_msg_set_bool(m, "flag", true);
    ep_msg_set_str(m, "artist", "Ella Fitzgérald");
    ep_msg_set_f32(m, "pcm", pcm, 5);
    ep_msg_set_i32(m, "codes", codes, 3);
    ep_msg_add_str(m, "caps", "audio");
    ep_msg_add_str(m, "caps", "resume");
    struct ep_msg *item = ep_msg_new("set");
    ep_msg_set_str(item, "name", "default");
    ep_msg_add_item(m, "sets", item);
    ep_msg_free(item);
    return m;
}

static void check_sample(const struct ep_msg *m)
{
    int64_t i;
    double d;
    bool b;
    char buf[64];
    size_t n;
    CHECK(strcmp(ep_msg_type(m), "submit") == 0);
    CHECK(ep_msg_get_int(m, "seed", &i) && i == -12345678901LL);
    CHECK(ep_msg_get_int(m, "candidates", &i) && i == 3);
    CHECK(ep_msg_get_double(m, "seconds", &d) && d == 2.5);
    CHECK(ep_msg_get_double(m, "candidates", &d) && d == 3);
    CHECK(!ep_msg_get_int(m, "seconds", &i));
    CHECK(ep_msg_get_bool(m, "flag", &b) && b);
    CHECK(ep_msg_get_strbuf(m, "artist", buf, sizeof buf) && strcmp(buf, "Ella Fitzgérald") == 0);
    CHECK(!ep_msg_get_strbuf(m, "artist", buf, 4)); /* too long for the buffer */
    CHECK(!ep_msg_has(m, "missing"));
    float *pcm = ep_msg_get_f32(m, "pcm", 100, &n);
    CHECK(pcm && n == 5 && pcm[0] == 0.5f && pcm[2] == 1e-30f && pcm[4] == -1);
    free(pcm);
    CHECK(ep_msg_get_f32(m, "pcm", 4, &n) == NULL); /* over the caller's limit */
    int32_t *codes = ep_msg_get_i32(m, "codes", 100, &n);
    CHECK(codes && n == 3 && codes[1] == -2 && codes[2] == 2047);
    free(codes);
    CHECK(ep_msg_list_len(m, "caps") == 2);
    CHECK(ep_msg_list_str(m, "caps", 1, buf, sizeof buf) && strcmp(buf, "resume") == 0);
    CHECK(ep_msg_list_len(m, "sets") == 1);
    struct ep_msg *item = ep_msg_list_item(m, "sets", 0);
    CHECK(item && ep_msg_get_strbuf(item, "name", buf, sizeof buf) && !strcmp(buf, "default"));
    ep_msg_free(item);
    CHECK(ep_msg_list_item(m, "sets", 1) == NULL);
}

/* frame of raw payload bytes */
static size_t frame(uint8_t *out, const void *payload, uint32_t n)
{
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    memcpy(out + 4, payload, n);
    return n + 4;
}

static enum ep_read_result feed_one(const void *bytes, size_t n, char *why)
{
    struct ep_reader r;
    ep_reader_init(&r, 1 << 20);
    struct ep_msg *m = NULL;
    ep_reader_feed(&r, bytes, n);
    enum ep_read_result res = ep_reader_next(&r, &m, why, 256);
    ep_msg_free(m);
    ep_reader_free(&r);
    return res;
}

static void bad_payload(const char *name, const void *payload, uint32_t n, const char *want)
{
    uint8_t buf[4096];
    char why[256]           = "";
    size_t len              = frame(buf, payload, n);
    enum ep_read_result res = feed_one(buf, len, why);
    if (res != EP_READ_BAD_MSG || (want && !strstr(why, want))) {
        fprintf(stderr, "bad payload '%s': result %d, why '%s'\n", name, (int)res, why);
        failures++;
    }
}

int main(void)
{
    /* round trip through one frame, fed one byte at a time */
    struct ep_msg *m = sample_msg();
    uint8_t *f;
    size_t len;
    CHECK(ep_msg_encode(m, 0, &f, &len));
    CHECK(!ep_msg_encode(m, 16, &(uint8_t *){ NULL }, &(size_t){ 0 })); /* over max_frame */
    ep_msg_free(m);
    struct ep_reader r;
    ep_reader_init(&r, 0);
    struct ep_msg *got = NULL;
    char why[256];
    int n_msgs = 0;
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < len; i++) {
            ep_reader_feed(&r, f + i, 1);
            enum ep_read_result res = ep_reader_next(&r, &got, why, sizeof why);
            if (i + 1 < len) CHECK(res == EP_READ_MORE);
            if (res == EP_READ_MSG) {
                check_sample(got);
                ep_msg_free(got);
                n_msgs++;
            }
        }
    CHECK(n_msgs == 2 && ep_reader_pending(&r) == 0);
    ep_reader_free(&r);

    /* writer: respects max_pending */
    struct ep_writer w;
    ep_writer_init(&w, len + 1);
    CHECK(ep_writer_push(&w, f, len));
    CHECK(!ep_writer_push(&w, f, len));
    CHECK(ep_writer_pending(&w) == len);
    ep_writer_free(&w);
    free(f);

    /* a length of 2^31: refused before anything is buffered */
    uint8_t huge[8] = { 0x80, 0, 0, 0, 0xa1, 0x61, 't', 0 };
    CHECK(feed_one(huge, sizeof huge, why) == EP_READ_BAD_FRAME);
    /* truncated frame: just waits */
    uint8_t part[6] = { 0, 0, 0, 10, 0xa1, 0x64 };
    CHECK(feed_one(part, sizeof part, why) == EP_READ_MORE);

    /* hostile payloads */
    bad_payload("empty", "", 0, "empty");
    bad_payload("not a map", "\x83\x01\x02\x03", 4, "map");
    bad_payload("garbage", "\xff\xfe\xfd\x00\x13", 5, NULL);
    bad_payload("truncated map", "\xa2\x64type\x65hello", 12, "truncated");
    bad_payload("no type", "\xa1\x61x\x01", 4, "type");
    bad_payload("int key", "\xa1\x01\x02", 3, "keys");
    bad_payload("type not text", "\xa1\x64type\x01", 7, "type");
    bad_payload("invalid utf-8", "\xa2\x64type\x61x\x66lyrics\x62\xc3\x28", 18, "UTF-8");
    bad_payload("overlong utf-8", "\xa1\x64type\x62\xc0\x80", 9, "UTF-8");
    bad_payload("indefinite map", "\xbf\x64type\x61x\xff", 9, "indefinite");
    bad_payload("tag", "\xa1\x64type\xc1\x61x", 9, "tag");
    bad_payload("trailing", "\xa1\x64type\x61x\x00", 9, "trailing");
    bad_payload("array of 2^32",
                "\xa2\x64type\x61x\x61"
                "a\x9b\x00\x00\x00\x01\x00\x00\x00\x00",
                19,
                NULL);
    bad_payload("bytes of 2^63",
                "\xa2\x64type\x61x\x61"
                "a\x5b\x80\x00\x00\x00\x00\x00\x00\x00",
                19,
                NULL);
    /* nesting deeper than EP_MAX_DEPTH */
    uint8_t deep[64] = "\xa2\x64type\x61x\x61"
                       "a";
    size_t dl        = 10;
    for (int i = 0; i < 20; i++)
        deep[dl++] = 0x81;
    deep[dl++] = 0x01;
    bad_payload("deep", deep, (uint32_t)dl, "deep");

    /* socket path precedence */
    char path[256];
    setenv("ENCORE_SOCKET", "/tmp/env.sock", 1);
    CHECK(ep_socket_path("/tmp/flag.sock", path, sizeof path) && !strcmp(path, "/tmp/flag.sock"));
    CHECK(ep_socket_path(NULL, path, sizeof path) && !strcmp(path, "/tmp/env.sock"));
    unsetenv("ENCORE_SOCKET");
    setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
    CHECK(ep_socket_path("", path, sizeof path) &&
          !strcmp(path, "/run/user/7/encore/encored.sock"));
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK(!ep_socket_path(longp, path, sizeof path));

    if (failures)
        fprintf(stderr, "test_proto: %d failures\n", failures);
    else
        printf("test_proto: all checks passed\n");
    return failures ? 1 : 0;
}
