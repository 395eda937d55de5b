/*
 * fake_encored - a scripted stand-in for encored, for the plugin's own tests only (issue 9
 * allows it for unit tests; the host tests run the real daemon). Speaks protocol 1 from
 * docs/protocol.md through daemon/proto, serves one client at a time, and answers a primed
 * submit with a deterministic take the test can check sample by sample:
 *   level 2 preview: value 0.125 * (cand + 1), starting 64 frames before the riff end (the
 *     prompt's tail, which the plugin must skip);
 *   level 0 final:   fake_final(cand, i) for the i-th new frame.
 * usage: fake_encored SOCKET [--die-after N] [--delay-ms D] [--once]
 *   --die-after N: close the connection after N audio events (daemon dies mid-stream)
 *   --delay-ms D:  wait D ms between audio events (a slow GPU)
 */
#include "encore_proto.h"
#include "fake_take.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096

static int die_after = -1, delay_ms = 0, sent_audio = 0;

static bool send_msg(int fd, struct ep_msg *m)
{
    bool ok = m && ep_send_blocking(fd, m, EP_MAX_FRAME_DEFAULT);
    ep_msg_free(m);
    return ok;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* false: the client cancelled or the connection must close */
static bool
send_audio(int fd, int cand, int level, int64_t first, const float *pcm, int64_t n, int64_t rate)
{
    if (die_after >= 0 && sent_audio >= die_after) return false;
    struct ep_msg *m = ep_msg_new("audio");
    ep_msg_set_int(m, "job", 1);
    ep_msg_set_int(m, "candidate", cand);
    ep_msg_set_int(m, "level", level);
    ep_msg_set_str(m, "role", level == 0 ? "final" : "preview");
    ep_msg_set_int(m, "first", first);
    ep_msg_set_int(m, "rate", rate);
    ep_msg_set_f32(m, "pcm", pcm, (size_t)n);
    if (!send_msg(fd, m)) return false;
    sent_audio++;
    if (delay_ms) sleep_ms(delay_ms);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 0; /* anything from the client now is a cancel (or a hang-up) */
}

static void serve(int fd)
{
    struct ep_reader r;
    ep_reader_init(&r, EP_MAX_FRAME_LIMIT);
    struct ep_msg *m = NULL;
    char why[200];
    int64_t riff_frames = 0, riff_rate = 0, rate = 44100, cands = 1, got = 0;
    double seconds   = 0;
    char artist[128] = "";
    while (ep_recv_blocking(fd, &r, 10000, &m, why, sizeof why) == EP_READ_MSG) {
        const char *type = ep_msg_type(m);
        if (!strcmp(type, "hello")) {
            struct ep_msg *h = ep_msg_new("hello");
            ep_msg_set_int(h, "version", 1);
            ep_msg_set_str(h, "daemon", "fake_encored 0");
            ep_msg_set_int(h, "max_frame", EP_MAX_FRAME_DEFAULT);
            send_msg(fd, h);
        } else if (!strcmp(type, "submit")) {
            ep_msg_get_int(m, "riff_frames", &riff_frames);
            ep_msg_get_int(m, "riff_rate", &riff_rate);
            ep_msg_get_int(m, "rate", &rate);
            ep_msg_get_int(m, "candidates", &cands);
            ep_msg_get_double(m, "seconds", &seconds);
            ep_msg_get_strbuf(m, "artist", artist, sizeof artist);
            got = 0;
            if (!strcmp(artist, "Nobody Known")) {
                struct ep_msg *e = ep_msg_new("error");
                ep_msg_set_str(e, "code", "unknown_label");
                ep_msg_set_str(e, "message", "unknown artist 'Nobody Known'");
                send_msg(fd, e);
            }
        } else if (!strcmp(type, "riff")) {
            size_t n   = 0;
            float *pcm = ep_msg_get_f32(m, "pcm", (size_t)1 << 26, &n);
            free(pcm);
            got += (int64_t)n;
            if (got >= riff_frames && riff_frames > 0) {
                struct ep_msg *a = ep_msg_new("accepted");
                ep_msg_set_int(a, "job", 1);
                ep_msg_set_int(a, "position", 0);
                send_msg(fd, a);
                int64_t new_frames = (int64_t)(seconds * (double)rate + 0.5);
                float *buf         = malloc(sizeof(float) * (CHUNK + 64));
                bool ok            = true;
                for (int c = 0; ok && c < cands; c++) { /* preview, prompt tail included */
                    for (int64_t i = 0; i < new_frames + 64; i++) {
                        int64_t k = i % CHUNK;
                        buf[k]    = 0.125f * (float)(c + 1);
                        if (k == CHUNK - 1 || i == new_frames + 63)
                            ok = ok &&
                                 send_audio(fd, c, 2, riff_frames - 64 + i - k, buf, k + 1, rate);
                    }
                }
                struct ep_msg *pr = ep_msg_new("progress");
                ep_msg_set_int(pr, "job", 1);
                ep_msg_set_int(pr, "done", 1);
                ep_msg_set_int(pr, "total", 2);
                ep_msg_set_double(pr, "eta", 1.0);
                ok = ok && send_msg(fd, pr);
                for (int c = 0; ok && c < cands; c++)
                    for (int64_t i = 0; ok && i < new_frames; i += CHUNK) {
                        int64_t cnt = new_frames - i < CHUNK ? new_frames - i : CHUNK;
                        for (int64_t k = 0; k < cnt; k++)
                            buf[k] = fake_final(c, i + k);
                        ok = send_audio(fd, c, 0, riff_frames + i, buf, cnt, rate);
                    }
                free(buf);
                if (!ok) break; /* died mid-stream, or cancelled: just hang up */
                struct ep_msg *d = ep_msg_new("done");
                ep_msg_set_int(d, "job", 1);
                ep_msg_set_int(d, "take", 7);
                ep_msg_set_int(d, "candidates", cands);
                send_msg(fd, d);
            }
        } else if (!strcmp(type, "cancel")) {
            struct ep_msg *c = ep_msg_new("cancelled");
            ep_msg_set_int(c, "job", 1);
            send_msg(fd, c);
        }
        ep_msg_free(m);
        m = NULL;
    }
    ep_msg_free(m);
    ep_reader_free(&r);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fake_encored SOCKET [--die-after N] [--delay-ms D] [--once]\n");
        return 2;
    }
    bool once = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--die-after") && i + 1 < argc)
            die_after = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
            delay_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--once"))
            once = true;
    }
    signal(SIGPIPE, SIG_IGN);
    int s                 = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
    unlink(argv[1]);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) || listen(s, 4)) {
        perror("fake_encored");
        return 1;
    }
    printf("fake_encored: listening on %s\n", argv[1]);
    fflush(stdout);
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0 && errno == EINTR) continue;
        if (fd < 0) break;
        sent_audio = 0;
        serve(fd);
        if (once) break;
    }
    close(s);
    unlink(argv[1]);
    return 0;
}
