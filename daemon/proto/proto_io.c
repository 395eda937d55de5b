/*
 * daemon/proto/proto_io.c - the socket path every program agrees on, connecting, and framing:
 * a reader that accepts bytes in any pieces and a writer queue for non-blocking sockets.
 */
#include "encore_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void say(char *why, size_t len, const char *fmt, const char *arg)
{
    if (why && len) snprintf(why, len, fmt, arg);
}

bool ep_socket_path(const char *flag, char *buf, size_t len)
{
    struct sockaddr_un sun;
    int n;
    const char *env = getenv("ENCORE_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (flag && *flag)
        n = snprintf(buf, len, "%s", flag);
    else if (env && *env)
        n = snprintf(buf, len, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(buf, len, "%s/encore/encored.sock", xdg);
    else
        n = snprintf(buf, len, "/tmp/encore-%u/encored.sock", (unsigned)getuid());
    return n > 0 && (size_t)n < len && (size_t)n < sizeof sun.sun_path;
}

int ep_connect(const char *path, bool nonblocking)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (!path || strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (nonblocking) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

/* ---------------------------------------------------------------------------------------- */
/* reader                                                                                    */

void ep_reader_init(struct ep_reader *r, size_t max_frame)
{
    memset(r, 0, sizeof *r);
    r->max_frame =
      max_frame == 0 || max_frame > EP_MAX_FRAME_LIMIT ? EP_MAX_FRAME_DEFAULT : max_frame;
}

void ep_reader_free(struct ep_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

static bool reserve(struct ep_reader *r, size_t need)
{
    if (need <= r->cap) return true;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(r->buf, cap);
    if (!b) return false;
    r->buf = b;
    r->cap = cap;
    return true;
}

bool ep_reader_feed(struct ep_reader *r, const void *data, size_t n)
{
    if (n == 0) return true;
    if (r->len > SIZE_MAX - n || !reserve(r, r->len + n)) return false;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return true;
}

static uint32_t frame_len(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

long ep_reader_read_fd(struct ep_reader *r, int fd)
{
    /* read at most the rest of the current frame (or a header), so a hostile peer cannot make
     * us buffer more than one frame */
    size_t want = 65536;
    if (r->len >= EP_FRAME_HEADER) {
        uint64_t whole = (uint64_t)frame_len(r->buf) + EP_FRAME_HEADER;
        if (whole > r->max_frame + EP_FRAME_HEADER) whole = r->len + 1; /* next_ rejects it */
        if (whole > r->len && whole - r->len < want) want = (size_t)(whole - r->len);
    }
    if (!reserve(r, r->len + want)) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n;
    do
        n = read(fd, r->buf + r->len, want);
    while (n < 0 && errno == EINTR);
    if (n > 0) r->len += (size_t)n;
    return (long)n;
}

enum ep_read_result ep_reader_next(struct ep_reader *r,
                                   struct ep_msg **out,
                                   char *why,
                                   size_t why_len)
{
    *out = NULL;
    if (r->len < EP_FRAME_HEADER) return EP_READ_MORE;
    const uint32_t n = frame_len(r->buf);
    if (n > r->max_frame) {
        char num[32];
        snprintf(num, sizeof num, "%u", n);
        say(why, why_len, "frame length %s is over the limit", num);
        return EP_READ_BAD_FRAME;
    }
    if (r->len - EP_FRAME_HEADER < n) return EP_READ_MORE;
    struct ep_msg *m  = ep_msg_decode(r->buf + EP_FRAME_HEADER, n, why, why_len);
    const size_t used = EP_FRAME_HEADER + (size_t)n;
    memmove(r->buf, r->buf + used, r->len - used);
    r->len -= used;
    if (!m) return EP_READ_BAD_MSG;
    *out = m;
    return EP_READ_MSG;
}

size_t ep_reader_pending(const struct ep_reader *r)
{
    return r->len;
}

/* ---------------------------------------------------------------------------------------- */
/* writer                                                                                    */

void ep_writer_init(struct ep_writer *w, size_t max_pending)
{
    memset(w, 0, sizeof *w);
    w->max_pending = max_pending ? max_pending : SIZE_MAX;
}

void ep_writer_free(struct ep_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

size_t ep_writer_pending(const struct ep_writer *w)
{
    return w->len - w->off;
}

bool ep_writer_push(struct ep_writer *w, const uint8_t *frame, size_t len)
{
    if (ep_writer_pending(w) + len > w->max_pending) return false;
    if (w->off > 0 && w->off == w->len) w->off = w->len = 0;
    if (w->len + len > w->cap) {
        /* compact first, then grow */
        if (w->off > 0) {
            memmove(w->buf, w->buf + w->off, w->len - w->off);
            w->len -= w->off;
            w->off = 0;
        }
        if (w->len + len > w->cap) {
            size_t cap = w->cap ? w->cap : 4096;
            while (cap < w->len + len)
                cap *= 2;
            uint8_t *b = realloc(w->buf, cap);
            if (!b) return false;
            w->buf = b;
            w->cap = cap;
        }
    }
    memcpy(w->buf + w->len, frame, len);
    w->len += len;
    return true;
}

bool ep_writer_push_msg(struct ep_writer *w, const struct ep_msg *msg, size_t max_frame)
{
    uint8_t *f;
    size_t n;
    if (!ep_msg_encode(msg, max_frame, &f, &n)) return false;
    bool ok = ep_writer_push(w, f, n);
    free(f);
    return ok;
}

int ep_writer_flush(struct ep_writer *w, int fd)
{
    while (w->off < w->len) {
        ssize_t n = send(fd, w->buf + w->off, w->len - w->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        w->off += (size_t)n;
    }
    w->off = w->len = 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* blocking helpers                                                                          */

bool ep_send_blocking(int fd, const struct ep_msg *msg, size_t max_frame)
{
    struct ep_writer w;
    ep_writer_init(&w, 0);
    bool ok = ep_writer_push_msg(&w, msg, max_frame);
    while (ok) {
        int r = ep_writer_flush(&w, fd);
        if (r == 1) break;
        if (r < 0) {
            ok = false;
            break;
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, -1) < 0 && errno != EINTR) ok = false;
    }
    ep_writer_free(&w);
    return ok;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum ep_read_result ep_recv_blocking(int fd,
                                     struct ep_reader *r,
                                     int timeout_ms,
                                     struct ep_msg **out,
                                     char *why,
                                     size_t why_len)
{
    const int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        enum ep_read_result res = ep_reader_next(r, out, why, why_len);
        if (res != EP_READ_MORE) return res;
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return EP_READ_MORE;
            wait = (int)left;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr          = poll(&p, 1, wait);
        if (pr < 0 && errno == EINTR) return EP_READ_MORE; /* a signal: let the caller look */
        if (pr < 0) {
            say(why, why_len, "%s", strerror(errno));
            return EP_READ_BAD_FRAME;
        }
        if (pr == 0) continue;
        long n = ep_reader_read_fd(r, fd);
        if (n == 0) {
            say(why, why_len, "%s", "connection closed");
            return EP_READ_BAD_FRAME;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            say(why, why_len, "%s", strerror(errno));
            return EP_READ_BAD_FRAME;
        }
    }
}

int ep_client_open(const char *socket_flag, const char *client_name, char *why, size_t why_len)
{
    char path[256];
    if (!ep_socket_path(socket_flag, path, sizeof path)) {
        say(why, why_len, "%s", "socket path too long");
        return -1;
    }
    int fd = ep_connect(path, false);
    if (fd < 0) {
        char msg[512];
        snprintf(
          msg, sizeof msg, "cannot connect to %s: %s (is encored running?)", path, strerror(errno));
        say(why, why_len, "%s", msg);
        return -1;
    }
    struct ep_msg *m = ep_msg_new("hello");
    bool ok          = m && ep_msg_set_int(m, "version", EP_PROTOCOL_VERSION) &&
              ep_msg_set_str(m, "client", client_name ? client_name : "client") &&
              ep_send_blocking(fd, m, 0);
    ep_msg_free(m);
    if (!ok) {
        say(why, why_len, "%s", "cannot send hello");
        close(fd);
        return -1;
    }
    struct ep_reader r;
    ep_reader_init(&r, 0);
    struct ep_msg *reply    = NULL;
    enum ep_read_result res = ep_recv_blocking(fd, &r, 10000, &reply, why, why_len);
    ep_reader_free(&r);
    if (res != EP_READ_MSG) {
        if (res == EP_READ_MORE) say(why, why_len, "%s", "no hello from the daemon within 10 s");
        close(fd);
        return -1;
    }
    int64_t v = 0;
    if (strcmp(ep_msg_type(reply), "hello") != 0 || !ep_msg_get_int(reply, "version", &v) ||
        v != EP_PROTOCOL_VERSION) {
        char msg[512] = "unexpected reply to hello";
        if (strcmp(ep_msg_type(reply), "error") == 0)
            ep_msg_get_strbuf(reply, "message", msg, sizeof msg);
        say(why, why_len, "%s", msg);
        ep_msg_free(reply);
        close(fd);
        return -1;
    }
    ep_msg_free(reply);
    return fd;
}
