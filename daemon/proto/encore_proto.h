/*
 * encore_proto.h - the wire protocol between encored and its clients (the CLI, the LV2 plugin,
 * the JACK client). The only public header of the `encore_proto` library, which does NOT link
 * the engine: a plugin links this alone.
 *
 * Wire format (docs/protocol.md is the reference): a frame is a 4-byte big-endian payload
 * length followed by that many bytes of CBOR (libcbor); the payload is one CBOR map with a text
 * key "type" naming the message and text keys for its fields. Floats travel as CBOR floats,
 * PCM as a byte string of little-endian float32, codes as little-endian int32.
 *
 * Threads: every object here belongs to one thread at a time; nothing blocks except the
 * ep_*_blocking helpers. A realtime audio thread must not call any of it (it allocates); use a
 * worker thread with a non-blocking socket: ep_reader accepts partial input, ep_writer queues
 * partial output.
 */
#ifndef ENCORE_PROTO_H
#define ENCORE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EP_PROTOCOL_VERSION 1
#define EP_FRAME_HEADER 4
#define EP_MAX_FRAME_DEFAULT (4u << 20) /* 4 MiB: largest frame either side accepts by default */
#define EP_MAX_FRAME_LIMIT (64u << 20)  /* no configuration may exceed this */
#define EP_MAX_DEPTH 8                  /* CBOR nesting accepted by the decoder */
#define EP_MAX_ITEMS 262144             /* CBOR items per frame accepted by the decoder */

/* ---------------------------------------------------------------------------------------- */
/* the socket                                                                                */

/* The socket every program uses: `flag` (a --socket PATH) if not NULL/empty, else
 * $ENCORE_SOCKET, else $XDG_RUNTIME_DIR/encore/encored.sock, else /tmp/encore-UID/encored.sock.
 * Returns false if it does not fit in buf or in a sockaddr_un. */
bool ep_socket_path(const char *flag, char *buf, size_t len);

/* Connects to the daemon's Unix stream socket; the fd is close-on-exec and, with nonblocking,
 * O_NONBLOCK (the connect itself completes immediately on a Unix socket or fails).
 * Returns the fd or -1 with errno set. */
int ep_connect(const char *path, bool nonblocking);

/* ---------------------------------------------------------------------------------------- */
/* messages: a CBOR map with "type"                                                          */

struct ep_msg;

struct ep_msg *ep_msg_new(const char *type); /* NULL on allocation failure */
void ep_msg_free(struct ep_msg *msg);        /* NULL is a no-op */
const char *ep_msg_type(const struct ep_msg *msg);

/* Setters set a field, replacing an earlier value of the same key. false
 * only on allocation failure or a string that is not valid UTF-8. */
bool ep_msg_set_int(struct ep_msg *msg, const char *key, int64_t value);
bool ep_msg_set_double(struct ep_msg *msg, const char *key, double value);
bool ep_msg_set_bool(struct ep_msg *msg, const char *key, bool value);
bool ep_msg_set_str(struct ep_msg *msg, const char *key, const char *value);
bool ep_msg_set_bytes(struct ep_msg *msg, const char *key, const void *data, size_t len);
bool ep_msg_set_f32(struct ep_msg *msg, const char *key, const float *v, size_t n);
bool ep_msg_set_i32(struct ep_msg *msg, const char *key, const int32_t *v, size_t n);
/* Appends a copy of item (a map built with ep_msg_new(NULL-free type)) to the array `key`. */
bool ep_msg_add_item(struct ep_msg *msg, const char *key, const struct ep_msg *item);
/* Appends a string to the array `key`. */
bool ep_msg_add_str(struct ep_msg *msg, const char *key, const char *value);

/* Getters: false if the field is absent or has another CBOR type (ints are accepted where a
 * double is asked for). Every integer is range-checked into int64_t. */
bool ep_msg_has(const struct ep_msg *msg, const char *key);
bool ep_msg_get_int(const struct ep_msg *msg, const char *key, int64_t *out);
bool ep_msg_get_double(const struct ep_msg *msg, const char *key, double *out);
bool ep_msg_get_bool(const struct ep_msg *msg, const char *key, bool *out);
/* A malloc'd NUL-terminated copy of a text field (strings holding NUL are refused); NULL if
 * absent, not text, or longer than max_len bytes. */
char *ep_msg_dup_str(const struct ep_msg *msg, const char *key, size_t max_len);
/* Copies a text field into buf (NUL-terminated); false if absent, not text, or too long. */
bool ep_msg_get_strbuf(const struct ep_msg *msg, const char *key, char *buf, size_t cap);
/* Byte string field, borrowed from msg (NULL if absent or not bytes). */
const uint8_t *ep_msg_get_bytes(const struct ep_msg *msg, const char *key, size_t *len);
/* Float32 / int32 arrays (byte strings whose length is a multiple of 4) copied into a new
 * malloc'd array; NULL if absent, malformed, or more than max_n values. */
float *ep_msg_get_f32(const struct ep_msg *msg, const char *key, size_t max_n, size_t *n);
int32_t *ep_msg_get_i32(const struct ep_msg *msg, const char *key, size_t max_n, size_t *n);
/* Arrays: number of entries (0 if absent), a new message viewing map entry i (free it), a
 * borrowed-into-buf copy of text entry i. */
size_t ep_msg_list_len(const struct ep_msg *msg, const char *key);
struct ep_msg *ep_msg_list_item(const struct ep_msg *msg, const char *key, size_t i);
bool ep_msg_list_str(const struct ep_msg *msg, const char *key, size_t i, char *buf, size_t cap);

/* Encodes msg as one frame (header + payload) into a malloc'd buffer. false on allocation
 * failure or if the payload exceeds max_frame. */
bool ep_msg_encode(const struct ep_msg *msg, size_t max_frame, uint8_t **frame, size_t *len);

/* Decodes one payload (without the header). Checks everything before building anything:
 * well-formed definite-length CBOR, nesting <= EP_MAX_DEPTH, items <= EP_MAX_ITEMS, a map at
 * the top with a text "type", text keys, valid UTF-8 in every text string, no trailing bytes.
 * NULL on failure with a one-line reason in why. */
struct ep_msg *ep_msg_decode(const uint8_t *payload, size_t len, char *why, size_t why_len);

/* ---------------------------------------------------------------------------------------- */
/* frame reader: accepts input in any pieces                                                 */

enum ep_read_result {
    EP_READ_MORE    = 0,    /* no complete frame yet */
    EP_READ_MSG     = 1,    /* *out holds a message */
    EP_READ_BAD_MSG = -1,   /* a complete frame did not decode (why says why); the stream is
                               still in sync: answer with an error and go on */
    EP_READ_BAD_FRAME = -2, /* length over the limit: the stream cannot be trusted, close it */
};

struct ep_reader {
    uint8_t *buf;
    size_t len, cap;
    size_t max_frame;
};

void ep_reader_init(struct ep_reader *r, size_t max_frame);
void ep_reader_free(struct ep_reader *r);
/* Appends bytes received. false on allocation failure. Never buffers more than one frame plus
 * what is given here; call ep_reader_next until it returns EP_READ_MORE after each feed. */
bool ep_reader_feed(struct ep_reader *r, const void *data, size_t n);
/* Reads what the (non-blocking) fd has, at most one read(2). Returns bytes read, 0 at end of
 * stream, -1 with errno (EAGAIN: nothing now). */
long ep_reader_read_fd(struct ep_reader *r, int fd);
enum ep_read_result ep_reader_next(struct ep_reader *r,
                                   struct ep_msg **out,
                                   char *why,
                                   size_t why_len);
/* Bytes buffered (a partial frame). */
size_t ep_reader_pending(const struct ep_reader *r);

/* ---------------------------------------------------------------------------------------- */
/* frame writer: queues output for a non-blocking fd                                         */

struct ep_writer {
    uint8_t *buf;
    size_t off, len, cap;
    size_t max_pending; /* bytes queued beyond which ep_writer_push refuses */
};

void ep_writer_init(struct ep_writer *w, size_t max_pending);
void ep_writer_free(struct ep_writer *w);
/* Queues an encoded frame. false if the queue would exceed max_pending (a slow reader) or on
 * allocation failure. */
bool ep_writer_push(struct ep_writer *w, const uint8_t *frame, size_t len);
/* Encodes and queues msg. */
bool ep_writer_push_msg(struct ep_writer *w, const struct ep_msg *msg, size_t max_frame);
/* Writes what the fd takes now. 1: queue empty, 0: more left (wait for POLLOUT), -1: error. */
int ep_writer_flush(struct ep_writer *w, int fd);
size_t ep_writer_pending(const struct ep_writer *w);

/* ---------------------------------------------------------------------------------------- */
/* blocking helpers for simple clients (the CLI, tests)                                      */

/* Sends msg on a blocking or non-blocking fd, waiting (poll) until written. false on error. */
bool ep_send_blocking(int fd, const struct ep_msg *msg, size_t max_frame);
/* Waits up to timeout_ms (-1: forever) for the next message. Returns EP_READ_MSG, EP_READ_MORE
 * on timeout, or an error; end of stream is EP_READ_BAD_FRAME with why "connection closed". */
enum ep_read_result ep_recv_blocking(int fd,
                                     struct ep_reader *r,
                                     int timeout_ms,
                                     struct ep_msg **out,
                                     char *why,
                                     size_t why_len);

/* Connects, sends hello and checks the daemon's hello. Returns the fd (blocking) or -1 with a
 * reason in why. */
int ep_client_open(const char *socket_flag, const char *client_name, char *why, size_t why_len);

/* Valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF)? */
bool ep_utf8_valid(const uint8_t *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* ENCORE_PROTO_H */
