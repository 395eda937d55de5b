/*
 * lv2host - the project's own small lilv host for testing encore.lv2 (issue 9).
 *
 * Features offered: urid map/unmap, log, worker (own thread, lock-free rings), options
 * (minBlockLength 1, maxBlockLength 4096, boundedBlockLength) with odd, varying block sizes,
 * state (save to a folder, restore into a new instance), time:Position on the control port
 * (also in the middle of blocks), the freeWheeling port.
 *
 * Realtime safety: malloc/calloc/realloc/free/pthread_mutex_lock/read/write/usleep/nanosleep
 * are interposed; a call from inside run() (on the audio thread, outside freewheel for
 * nanosleep) is counted and fails the test. Compiled out under sanitizers (they own malloc).
 *
 * Scenarios (--scenario):
 *   continue  riff recorded with the record toggle at 120 BPM (pressed late, released early),
 *             continue pressed, wait for done, play the timeline again: the continuation must
 *             start exactly at the riff's end frame (bar 3); with --fake the samples must be
 *             the fake daemon's final audio; then save state, restore it into a new instance
 *             with no daemon, and the playback must be identical.
 *   freewheel as continue, but the playback pass runs in freewheel right after the request:
 *             the plugin must wait for the audio still being generated (fake, slow daemon).
 *   die       the daemon dies mid-stream: the state port says error, a message arrives on the
 *             notify port, and the plugin keeps passing audio through.
 *   retry     no daemon at first: error; the daemon starts (--daemon-cmd); continue again: done.
 * usage: lv2host --lv2 DIR --socket PATH --rate R --scenario S [--fake] [--seconds S]
 *                [--daemon-cmd "CMD"] [--state-dir DIR] [--timeout S]
 */

#include "fake_take.h"
#include "ring.h"

#include <dlfcn.h>
#include <lilv/lilv.h>
#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/log/log.h>
#include <lv2/options/options.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/time/time.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define URI "https://encore.invalid/lv2/encore"
#define MAX_BLOCK 4096

/* --- realtime guard ----------------------------------------------------------------------- */

static __thread int in_run;       /* set around run() on the audio thread */
static __thread int in_freewheel; /* nanosleep is allowed in freewheel export waits */
static atomic_int rt_violations;
static const char *_Atomic rt_what;

#if defined(__SANITIZE_ADDRESS__)
#define RT_GUARD 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define RT_GUARD 0
#endif
#endif
#ifndef RT_GUARD
#define RT_GUARD 1
#endif

#if RT_GUARD
static void rt_hit(const char *what)
{
    if (in_run) {
        atomic_fetch_add(&rt_violations, 1);
        atomic_store(&rt_what, what);
    }
}
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n)
{
    rt_hit("malloc");
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    rt_hit("calloc");
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    rt_hit("realloc");
    return __libc_realloc(p, n);
}
void free(void *p)
{
    if (p) rt_hit("free");
    __libc_free(p);
}
#define REAL(ret, name, args)                                                                      \
    static ret(*real_##name) args;                                                                 \
    static void load_##name(void)                                                                  \
    {                                                                                              \
        if (!real_##name) real_##name = (ret(*) args)dlsym(RTLD_NEXT, #name);                      \
    }
REAL(int, pthread_mutex_lock, (pthread_mutex_t *))
REAL(ssize_t, read, (int, void *, size_t))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(int, usleep, (useconds_t))
REAL(int, nanosleep, (const struct timespec *, struct timespec *))
int pthread_mutex_lock(pthread_mutex_t *m)
{
    rt_hit("pthread_mutex_lock");
    load_pthread_mutex_lock();
    return real_pthread_mutex_lock(m);
}
ssize_t read(int fd, void *b, size_t n)
{
    rt_hit("read");
    load_read();
    return real_read(fd, b, n);
}
ssize_t write(int fd, const void *b, size_t n)
{
    rt_hit("write");
    load_write();
    return real_write(fd, b, n);
}
int usleep(useconds_t us)
{
    rt_hit("usleep");
    load_usleep();
    return real_usleep(us);
}
int nanosleep(const struct timespec *a, struct timespec *b)
{
    if (!in_freewheel) rt_hit("nanosleep");
    load_nanosleep();
    return real_nanosleep(a, b);
}
#endif

#if !RT_GUARD
static void rt_hit(const char *what)
{
    (void)what;
}
#endif

/* --- urid map (non-realtime only) ---------------------------------------------------------- */

static char **uris;
static int n_uris;
static pthread_mutex_t uri_lock = PTHREAD_MUTEX_INITIALIZER;

static LV2_URID map_uri(LV2_URID_Map_Handle h, const char *u)
{
    (void)h;
    pthread_mutex_lock(&uri_lock);
    for (int i = 0; i < n_uris; i++)
        if (!strcmp(uris[i], u)) {
            pthread_mutex_unlock(&uri_lock);
            return (LV2_URID)(i + 1);
        }
    uris           = realloc(uris, sizeof(char *) * (size_t)(n_uris + 1));
    uris[n_uris++] = strdup(u);
    LV2_URID id    = (LV2_URID)n_uris;
    pthread_mutex_unlock(&uri_lock);
    return id;
}

static const char *unmap_uri(LV2_URID_Unmap_Handle h, LV2_URID id)
{
    (void)h;
    return id >= 1 && (int)id <= n_uris ? uris[id - 1] : NULL;
}

static int log_printf(LV2_Log_Handle h, LV2_URID type, const char *fmt, ...)
{
    (void)h, (void)type;
    if (in_run) /* the plugin must not log from run() */
        rt_hit("log");
    va_list ap;
    va_start(ap, fmt);
    printf("[plugin] ");
    int r = vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    return r;
}
static int log_vprintf(LV2_Log_Handle h, LV2_URID type, const char *fmt, va_list ap)
{
    (void)h, (void)type;
    if (in_run) rt_hit("log");
    printf("[plugin] ");
    return vprintf(fmt, ap);
}

/* --- host ---------------------------------------------------------------------------------- */

struct host {
    LilvWorld *world;
    const LilvPlugin *plugin;
    LilvInstance *inst;
    double rate;
    const LV2_Worker_Interface *worker;
    pthread_t worker_thread;
    atomic_bool worker_stop;
    struct ring work_req, work_resp;
    unsigned char work_req_buf[1 << 16], work_resp_buf[1 << 16];

    float ctl[32];
    int32_t n_ports;
    uint32_t p_in_l, p_in_r, p_out_l, p_out_r, p_control, p_notify;
    float in_l[MAX_BLOCK], in_r[MAX_BLOCK], out_l[MAX_BLOCK], out_r[MAX_BLOCK];
    union {
        LV2_Atom_Sequence seq;
        uint8_t bytes[8192];
        uint64_t align; /* LV2 atom buffers are 64-bit aligned */
    } control, notify;
    LV2_Atom_Forge forge;

    int64_t frame;
    bool rolling;
    char last_message[512];
    LV2_URID u_message, u_patch_Set, u_patch_property, u_patch_value, u_atom_String, u_atom_URID;
    LV2_URID_Map map;
    LV2_URID_Unmap unmap;
    LV2_Feature f_map, f_unmap, f_log, f_sched, f_opts, f_bounded;
    const LV2_Feature *features[8];
    LV2_Log_Log log;
    LV2_Worker_Schedule sched;
    LV2_Options_Option opts[4];
    int32_t min_block, max_block;
    uint32_t rng;
};

static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle hd,
                                       uint32_t size,
                                       const void *data)
{
    struct host *h = hd;
    if (ring_write_space(&h->work_req) < sizeof size + size) return LV2_WORKER_ERR_NO_SPACE;
    ring_write(&h->work_req, &size, sizeof size);
    ring_write(&h->work_req, data, size);
    return LV2_WORKER_SUCCESS;
}

static LV2_Worker_Status respond(LV2_Worker_Respond_Handle hd, uint32_t size, const void *data)
{
    struct host *h = hd;
    if (ring_write_space(&h->work_resp) < sizeof size + size) return LV2_WORKER_ERR_NO_SPACE;
    ring_write(&h->work_resp, &size, sizeof size);
    ring_write(&h->work_resp, data, size);
    return LV2_WORKER_SUCCESS;
}

static void *worker_main(void *arg)
{
    struct host *h = arg;
    static unsigned char buf[1 << 16];
    while (!atomic_load(&h->worker_stop)) {
        uint32_t size;
        if (ring_read(&h->work_req, &size, sizeof size)) {
            while (!ring_read(&h->work_req, buf, size)) {
            }
            h->worker->work(lilv_instance_get_handle(h->inst), respond, h, size, buf);
        } else {
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static uint32_t port_index(struct host *h, const char *sym)
{
    LilvNode *s       = lilv_new_string(h->world, sym);
    const LilvPort *p = lilv_plugin_get_port_by_symbol(h->plugin, s);
    lilv_node_free(s);
    if (!p) {
        fprintf(stderr, "FAIL: plugin has no port '%s'\n", sym);
        exit(1);
    }
    return lilv_port_get_index(h->plugin, p);
}

static void set_ctl(struct host *h, const char *sym, float v)
{
    h->ctl[port_index(h, sym)] = v;
}

static float get_ctl(struct host *h, const char *sym)
{
    return h->ctl[port_index(h, sym)];
}

static bool host_open(struct host *h, LilvWorld *world, double rate)
{
    memset(h, 0, sizeof *h);
    h->world    = world;
    h->rate     = rate;
    h->rng      = 12345;
    LilvNode *u = lilv_new_uri(world, URI);
    h->plugin   = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), u);
    lilv_node_free(u);
    if (!h->plugin) {
        fprintf(stderr, "FAIL: %s not found\n", URI);
        return false;
    }
    h->map            = (LV2_URID_Map){ NULL, map_uri };
    h->unmap          = (LV2_URID_Unmap){ NULL, unmap_uri };
    h->log            = (LV2_Log_Log){ NULL, log_printf, log_vprintf };
    h->sched          = (LV2_Worker_Schedule){ h, schedule_work };
    h->min_block      = 1;
    h->max_block      = MAX_BLOCK;
    LV2_URID atom_Int = map_uri(NULL, LV2_ATOM__Int);
    h->opts[0]        = (LV2_Options_Option){
        LV2_OPTIONS_INSTANCE, 0,        map_uri(NULL, LV2_BUF_SIZE__minBlockLength),
        sizeof(int32_t),      atom_Int, &h->min_block
    };
    h->opts[1] = (LV2_Options_Option){
        LV2_OPTIONS_INSTANCE, 0,        map_uri(NULL, LV2_BUF_SIZE__maxBlockLength),
        sizeof(int32_t),      atom_Int, &h->max_block
    };
    h->f_map               = (LV2_Feature){ LV2_URID__map, &h->map };
    h->f_unmap             = (LV2_Feature){ LV2_URID__unmap, &h->unmap };
    h->f_log               = (LV2_Feature){ LV2_LOG__log, &h->log };
    h->f_sched             = (LV2_Feature){ LV2_WORKER__schedule, &h->sched };
    h->f_opts              = (LV2_Feature){ LV2_OPTIONS__options, h->opts };
    h->f_bounded           = (LV2_Feature){ LV2_BUF_SIZE__boundedBlockLength, NULL };
    const LV2_Feature *f[] = { &h->f_map,  &h->f_unmap,   &h->f_log, &h->f_sched,
                               &h->f_opts, &h->f_bounded, NULL };
    memcpy(h->features, f, sizeof f);
    ring_init(&h->work_req, h->work_req_buf, sizeof h->work_req_buf);
    ring_init(&h->work_resp, h->work_resp_buf, sizeof h->work_resp_buf);
    h->inst = lilv_plugin_instantiate(h->plugin, rate, h->features);
    if (!h->inst) {
        fprintf(stderr, "FAIL: instantiate at %g Hz\n", rate);
        return false;
    }
    h->worker = lilv_instance_get_extension_data(h->inst, LV2_WORKER__interface);
    pthread_create(&h->worker_thread, NULL, worker_main, h);
    h->u_message        = map_uri(NULL, URI "#message");
    h->u_patch_Set      = map_uri(NULL, LV2_PATCH__Set);
    h->u_patch_property = map_uri(NULL, LV2_PATCH__property);
    h->u_patch_value    = map_uri(NULL, LV2_PATCH__value);
    h->u_atom_String    = map_uri(NULL, LV2_ATOM__String);
    h->u_atom_URID      = map_uri(NULL, LV2_ATOM__URID);
    lv2_atom_forge_init(&h->forge, &h->map);

    h->n_ports = (int32_t)lilv_plugin_get_num_ports(h->plugin);
    float mins[32], maxs[32], defs[32];
    lilv_plugin_get_port_ranges_float(h->plugin, mins, maxs, defs);
    for (int i = 0; i < h->n_ports; i++)
        h->ctl[i] = isnan(defs[i]) ? 0.0f : defs[i];
    h->p_in_l    = port_index(h, "in_l");
    h->p_in_r    = port_index(h, "in_r");
    h->p_out_l   = port_index(h, "out_l");
    h->p_out_r   = port_index(h, "out_r");
    h->p_control = port_index(h, "control");
    h->p_notify  = port_index(h, "notify");
    for (int i = 0; i < h->n_ports; i++)
        lilv_instance_connect_port(h->inst, (uint32_t)i, &h->ctl[i]);
    lilv_instance_connect_port(h->inst, h->p_in_l, h->in_l);
    lilv_instance_connect_port(h->inst, h->p_in_r, h->in_r);
    lilv_instance_connect_port(h->inst, h->p_out_l, h->out_l);
    lilv_instance_connect_port(h->inst, h->p_out_r, h->out_r);
    lilv_instance_connect_port(h->inst, h->p_control, &h->control);
    lilv_instance_connect_port(h->inst, h->p_notify, &h->notify);
    lilv_instance_activate(h->inst);
    return true;
}

static void host_close(struct host *h)
{
    atomic_store(&h->worker_stop, true);
    pthread_join(h->worker_thread, NULL);
    lilv_instance_deactivate(h->inst);
    lilv_instance_free(h->inst);
}

/* odd, varying block sizes in 1..MAX_BLOCK */
static uint32_t next_block(struct host *h)
{
    h->rng     = h->rng * 1103515245u + 12345u;
    uint32_t r = (h->rng >> 8) % 100;
    if (r < 5) return 1;
    if (r < 10) return MAX_BLOCK;
    return 1 + (h->rng >> 12) % 1023 * 2; /* odd sizes up to 2047 */
}

static void forge_position(struct host *h, uint32_t offset, int64_t frame, bool rolling)
{
    LV2_Atom_Forge *f = &h->forge;
    LV2_Atom_Forge_Frame fr;
    double beat = (double)frame / (h->rate * 0.5); /* 120 BPM */
    lv2_atom_forge_frame_time(f, offset);
    lv2_atom_forge_object(f, &fr, 0, map_uri(NULL, LV2_TIME__Position));
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__frame));
    lv2_atom_forge_long(f, frame);
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__speed));
    lv2_atom_forge_float(f, rolling ? 1.0f : 0.0f);
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__bar));
    lv2_atom_forge_long(f, (int64_t)(beat / 4));
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__barBeat));
    lv2_atom_forge_float(f, (float)fmod(beat, 4.0));
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__beatsPerBar));
    lv2_atom_forge_float(f, 4.0f);
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__beatUnit));
    lv2_atom_forge_int(f, 4);
    lv2_atom_forge_key(f, map_uri(NULL, LV2_TIME__beatsPerMinute));
    lv2_atom_forge_float(f, 120.0f);
    lv2_atom_forge_pop(f, &fr);
}

/* Runs one block; `send_time` puts a position at the block start, and sometimes a second one
 * in the middle of the block (same timeline, so nothing moves). Returns frames processed. */
static void host_run(struct host *h, uint32_t n, bool send_time, bool freewheel)
{
    lv2_atom_forge_set_buffer(&h->forge, h->control.bytes, sizeof h->control.bytes);
    LV2_Atom_Forge_Frame fr;
    lv2_atom_forge_sequence_head(&h->forge, &fr, 0);
    if (send_time) {
        forge_position(h, 0, h->frame, h->rolling);
        if (n > 2 && h->rolling) forge_position(h, n / 2, h->frame + n / 2, h->rolling);
    }
    lv2_atom_forge_pop(&h->forge, &fr);
    h->notify.seq.atom.size = sizeof h->notify.bytes - sizeof(LV2_Atom);
    h->notify.seq.atom.type = 0;
    set_ctl(h, "freewheel", freewheel ? 1.0f : 0.0f);
    in_run       = RT_GUARD;
    in_freewheel = freewheel;
    lilv_instance_run(h->inst, n);
    in_run = 0;
    uint32_t size;
    static unsigned char buf[1 << 16];
    while (ring_read(&h->work_resp, &size, sizeof size)) {
        while (!ring_read(&h->work_resp, buf, size)) {
        }
        h->worker->work_response(lilv_instance_get_handle(h->inst), size, buf);
    }
    /* notify: patch:Set encore:message "..." */
    if (h->notify.seq.atom.type) {
        LV2_ATOM_SEQUENCE_FOREACH (&h->notify.seq, ev) {
            const LV2_Atom_Object *o = (const LV2_Atom_Object *)&ev->body;
            if (o->body.otype != h->u_patch_Set) continue;
            const LV2_Atom *prop = NULL, *val = NULL;
            lv2_atom_object_get(o, h->u_patch_property, &prop, h->u_patch_value, &val, 0);
            if (prop && prop->type == h->u_atom_URID &&
                ((const LV2_Atom_URID *)prop)->body == h->u_message && val &&
                val->type == h->u_atom_String) {
                snprintf(h->last_message,
                         sizeof h->last_message,
                         "%s",
                         (const char *)LV2_ATOM_BODY_CONST(val));
                printf("[notify] %s\n", h->last_message);
            }
        }
    }
    if (h->rolling) h->frame += n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nap_ms(int ms)
{
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

/* Plays frames [0, total) of the timeline with `input` (NULL: silence) into out (mono L). */
static void play(struct host *h,
                 int64_t total,
                 const float *input,
                 float *out,
                 bool freewheel,
                 void (*at)(struct host *, int64_t, void *),
                 void *user)
{
    h->frame     = 0;
    h->rolling   = true;
    int64_t done = 0;
    int k        = 0;
    while (done < total) {
        uint32_t n = next_block(h);
        if (n > total - done) n = (uint32_t)(total - done);
        if (at) at(h, done, user);
        for (uint32_t i = 0; i < n; i++)
            h->in_l[i] = h->in_r[i] = input ? input[done + i] : 0.0f;
        host_run(h, n, k++ % 7 == 0, freewheel);
        for (uint32_t i = 0; i < n; i++) {
            if (out) out[done + i] = h->out_l[i];
            if (h->out_l[i] != h->out_r[i]) {
                fprintf(stderr, "FAIL: left and right differ at %lld\n", (long long)(done + i));
                exit(1);
            }
        }
        done += n;
        set_ctl(h, "continue", 0.0f);
    }
}

/* Runs stopped-transport blocks in real time until the state port shows one of the states. */
static int wait_state(struct host *h, int want_a, int want_b, double timeout)
{
    h->rolling   = false;
    double until = now_s() + timeout;
    int k        = 0;
    while (now_s() < until) {
        host_run(h, 256, k++ % 50 == 0, false);
        int st = (int)get_ctl(h, "state");
        if (st == want_a || st == want_b) return st;
        nap_ms(5);
    }
    return (int)get_ctl(h, "state");
}

/* The state port and the message that explains it can change in different cycles (the message
 * is sent on the notify port of a later run than the state's): runs until the last message
 * contains `needle`, or the timeout. */
static bool wait_message(struct host *h, const char *needle, double timeout)
{
    h->rolling   = false;
    double until = now_s() + timeout;
    int k        = 0;
    while (!strstr(h->last_message, needle) && now_s() < until) {
        host_run(h, 256, k++ % 50 == 0, false);
        nap_ms(5);
    }
    return strstr(h->last_message, needle) != NULL;
}

struct rec_script {
    int64_t on, off, cont;
};

static void record_script(struct host *h, int64_t at, void *user)
{
    struct rec_script *s = user;
    set_ctl(h, "record", at >= s->on && at < s->off ? 1.0f : 0.0f);
    if (s->cont >= 0 && at >= s->cont) {
        set_ctl(h, "continue", 1.0f);
        s->cont = -1;
    }
}

static int64_t first_nonzero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return i;
    return -1;
}

int main(int argc, char **argv)
{
    const char *lv2 = NULL, *sock = NULL, *scenario = "continue", *daemon_cmd = NULL,
               *state_dir = NULL;
    double rate = 48000, seconds = 1.0, timeout = 600;
    bool fake  = false;
    int n_cand = 2, kill_pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--fake"))
            fake = true;
        else if (v && !strcmp(a, "--lv2"))
            lv2 = v, i++;
        else if (v && !strcmp(a, "--socket"))
            sock = v, i++;
        else if (v && !strcmp(a, "--rate"))
            rate = atof(v), i++;
        else if (v && !strcmp(a, "--scenario"))
            scenario = v, i++;
        else if (v && !strcmp(a, "--seconds"))
            seconds = atof(v), i++;
        else if (v && !strcmp(a, "--daemon-cmd"))
            daemon_cmd = v, i++;
        else if (v && !strcmp(a, "--state-dir"))
            state_dir = v, i++;
        else if (v && !strcmp(a, "--candidates"))
            n_cand = atoi(v), i++;
        else if (v && !strcmp(a, "--kill-pid"))
            kill_pid = atoi(v), i++;
        else if (v && !strcmp(a, "--timeout"))
            timeout = atof(v), i++;
        else {
            fprintf(stderr, "lv2host: bad argument %s\n", a);
            return 2;
        }
    }
    if (!lv2 || !sock) {
        fprintf(stderr, "usage: lv2host --lv2 DIR --socket PATH --rate R --scenario S\n");
        return 2;
    }
#if RT_GUARD
    { /* the guard itself works: a malloc "inside run()" is caught (then forgotten) */
        in_run                          = 1;
        void *(*volatile alloc)(size_t) = malloc; /* not elided by the compiler */
        void *volatile p                = alloc(16);
        in_run                          = 0;
        free(p);
        if (atomic_load(&rt_violations) != 1) {
            fprintf(stderr, "FAIL: the malloc interposer is not active\n");
            return 1;
        }
        atomic_store(&rt_violations, 0);
    }
#endif
    char abs[4096];
    if (!realpath(lv2, abs)) {
        fprintf(stderr, "FAIL: %s missing\n", lv2);
        return 1;
    }
    setenv("LV2_PATH", abs, 1);
    LilvWorld *world = lilv_world_new();
    lilv_world_load_all(world);
    static struct host H, H2;
    struct host *h = &H;
    if (!host_open(h, world, rate)) return 1;
    printf("lv2host: %s at %g Hz, blocks 1..%d, scenario %s, %s daemon\n",
           URI,
           rate,
           MAX_BLOCK,
           scenario,
           fake ? "fake" : "real");

    /* set the socket through the patch:Parameter, as a UI or preset would */
    {
        lv2_atom_forge_set_buffer(&h->forge, h->control.bytes, sizeof h->control.bytes);
        LV2_Atom_Forge_Frame fr, ob;
        lv2_atom_forge_sequence_head(&h->forge, &fr, 0);
        lv2_atom_forge_frame_time(&h->forge, 0);
        lv2_atom_forge_object(&h->forge, &ob, 0, h->u_patch_Set);
        lv2_atom_forge_key(&h->forge, h->u_patch_property);
        lv2_atom_forge_urid(&h->forge, map_uri(NULL, URI "#socket"));
        lv2_atom_forge_key(&h->forge, h->u_patch_value);
        lv2_atom_forge_string(&h->forge, sock, (uint32_t)strlen(sock));
        lv2_atom_forge_pop(&h->forge, &ob);
        lv2_atom_forge_pop(&h->forge, &fr);
        in_run = RT_GUARD;
        lilv_instance_run(h->inst, 64);
        in_run = 0;
        nap_ms(50); /* the worker stores it */
    }

    int64_t bar      = (int64_t)llround(2.0 * rate);
    int64_t riff_end = 3 * bar, new_frames = (int64_t)llround(seconds * rate);
    int64_t total = riff_end + new_frames + bar;
    float *input  = calloc((size_t)total, sizeof(float));
    float *out    = calloc((size_t)total, sizeof(float));
    float *out2   = calloc((size_t)total, sizeof(float));
    for (int64_t i = 0; i < total; i++)
        input[i] = 0.5f * sinf(2.0f * (float)M_PI * 220.0f * (float)i / (float)rate);
    set_ctl(h, "seconds", (float)seconds);
    set_ctl(h, "candidates", (float)n_cand);
    set_ctl(h, "candidate", (float)n_cand);
    set_ctl(h, "artist", 3); /* Ella Fitzgerald */
    set_ctl(h, "genre", 3);  /* Jazz */
    int fails = 0;

    if (!strcmp(scenario, "retry")) {
        set_ctl(h, "mix", 0.5f);
        struct rec_script s = { (int64_t)(bar + 0.1 * rate),
                                (int64_t)(3 * bar - 0.1 * rate),
                                riff_end + (int64_t)(0.3 * rate) };
        play(h, riff_end + (int64_t)(0.5 * rate), input, NULL, false, record_script, &s);
        int st      = wait_state(h, 6, 5, 10);
        bool reason = st == 6 && wait_message(h, "cannot reach encored", 2.0);
        printf("without daemon: state %d, message: %s\n", st, h->last_message);
        if (!reason)
            fprintf(stderr, "FAIL: expected the error state and a 'cannot reach' message\n"),
              fails++;
        if (daemon_cmd && system(daemon_cmd) != 0)
            fprintf(stderr, "FAIL: %s\n", daemon_cmd), fails++;
        set_ctl(h, "continue", 1.0f);
        host_run(h, 64, false, false);
        set_ctl(h, "continue", 0.0f);
        for (int k = 0; k < 1000 && (int)get_ctl(h, "state") == 6; k++)
            wait_state(h, 5, 5, 0.005); /* leave the old error state first */
        st = wait_state(h, 5, 6, timeout);
        printf("after the daemon started: state %d\n", st);
        if (st != 5)
            fprintf(stderr, "FAIL: retry did not finish (state %d: %s)\n", st, h->last_message),
              fails++;
    } else if (!strcmp(scenario, "die")) {
        set_ctl(h, "mix", 0.5f);
        struct rec_script s = { (int64_t)(bar + 0.1 * rate),
                                (int64_t)(3 * bar - 0.1 * rate),
                                riff_end + (int64_t)(0.3 * rate) };
        play(h, riff_end + (int64_t)(0.5 * rate), input, NULL, false, record_script, &s);
        if (kill_pid > 0) { /* a real daemon: stop it hard once the job runs */
            int busy = wait_state(h, 3, 4, timeout);
            printf("job running (state %d): killing the daemon (pid %d)\n", busy, kill_pid);
            kill(kill_pid, SIGKILL);
        }
        int st      = wait_state(h, 6, 5, timeout);
        bool reason = st == 6 && wait_message(h, "lost", 2.0);
        printf("daemon died mid-stream: state %d, message: %s\n", st, h->last_message);
        if (!reason)
            fprintf(stderr, "FAIL: expected the error state and a 'connection lost' message\n"),
              fails++;
        /* the host keeps running and audio passes through (mix 0.5: dry at unity) */
        set_ctl(h, "candidate", 1);
        h->frame   = 100 * bar; /* far from any take */
        h->rolling = true;
        for (int k = 0; k < 50; k++) {
            for (int i = 0; i < 333; i++)
                h->in_l[i] = h->in_r[i] = input[k * 333 + i];
            host_run(h, 333, k == 0, false);
            for (int i = 0; i < 333; i++)
                if (h->out_l[i] != input[k * 333 + i]) {
                    fprintf(stderr, "FAIL: no pass-through after the error\n");
                    fails++;
                    k = 50;
                    break;
                }
        }
    } else { /* continue, freewheel */
        bool fw = !strcmp(scenario, "freewheel");
        set_ctl(h, "mix", 0.5f);
        struct rec_script s = { (int64_t)(bar + 0.1 * rate),
                                (int64_t)(3 * bar - 0.1 * rate),
                                riff_end + (int64_t)(0.3 * rate) };
        play(h, riff_end + (int64_t)(0.5 * rate), input, NULL, false, record_script, &s);
        int st = fw ? wait_state(h, 2, 4, 10) : wait_state(h, 5, 6, timeout);
        printf("after continue: state %d (%s)\n", st, h->last_message);
        if (!fw && st != 5) {
            fprintf(stderr, "FAIL: job did not finish: %s\n", h->last_message);
            return 1;
        }
        set_ctl(h, "mix", 1.0f); /* continuation only */
        double t0 = now_s();
        play(h, total, NULL, out, fw, NULL, NULL);
        printf("playback pass%s: %.2f s wall\n", fw ? " (freewheel)" : "", now_s() - t0);
        int64_t first = first_nonzero(out, total);
        printf("riff end frame %lld, continuation starts at %lld\n",
               (long long)riff_end,
               (long long)first);
        if (first != riff_end)
            fprintf(stderr,
                    "FAIL: continuation at %lld, riff ended at %lld\n",
                    (long long)first,
                    (long long)riff_end),
              fails++;
        int64_t after = first_nonzero(out + riff_end + new_frames, total - riff_end - new_frames);
        if (after >= 0)
            fprintf(stderr, "FAIL: audio after the take's end (+%lld)\n", (long long)after),
              fails++;
        if (fake) {
            int64_t bad = 0;
            for (int64_t i = 0; i < new_frames; i++)
                bad += out[riff_end + i] != fake_final(n_cand - 1, i);
            printf("final audio of candidate 2: %lld of %lld samples differ\n",
                   (long long)bad,
                   (long long)new_frames);
            if (bad) fails++;
        } else {
            int64_t nz = 0;
            for (int64_t i = 0; i < new_frames; i++)
                nz += out[riff_end + i] != 0.0f;
            printf("continuation: %lld of %lld samples non-zero\n",
                   (long long)nz,
                   (long long)new_frames);
            if (nz < new_frames / 2)
                fprintf(stderr, "FAIL: the continuation is mostly silent\n"), fails++;
        }
        if (state_dir && !fw) {
            /* save, then restore into a new instance with no daemon: same playback */
            LilvState *st_save =
              lilv_state_new_from_instance(h->plugin,
                                           h->inst,
                                           &h->map,
                                           NULL,
                                           state_dir,
                                           state_dir,
                                           state_dir,
                                           NULL,
                                           NULL,
                                           LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE,
                                           NULL);
            if (!st_save ||
                lilv_state_save(world, &h->map, &h->unmap, st_save, NULL, state_dir, "state.ttl")) {
                fprintf(stderr, "FAIL: state save\n");
                return 1;
            }
            lilv_state_free(st_save);
            host_close(h);
            if (!host_open(&H2, world, rate)) return 1;
            char path[4200];
            snprintf(path, sizeof path, "%s/state.ttl", state_dir);
            LilvState *st_load = lilv_state_new_from_file(world, &H2.map, NULL, path);
            if (!st_load) {
                fprintf(stderr, "FAIL: state load %s\n", path);
                return 1;
            }
            const LV2_Feature *rf[] = { &H2.f_map, &H2.f_log, NULL };
            lilv_state_restore(st_load, H2.inst, NULL, NULL, 0, rf);
            lilv_state_free(st_load);
            set_ctl(&H2, "mix", 1.0f);
            set_ctl(&H2, "candidate", 2);
            play(&H2, total, NULL, out2, false, NULL, NULL);
            int64_t diff = 0;
            for (int64_t i = 0; i < total; i++)
                diff += out[i] != out2[i];
            printf("restored without the daemon: %lld of %lld samples differ\n",
                   (long long)diff,
                   (long long)total);
            if (diff) fails++;
            h = &H2;
        }
    }
    host_close(h);
    int v = atomic_load(&rt_violations);
    if (RT_GUARD) {
        printf("realtime guard: %d calls to forbidden functions inside run()%s%s\n",
               v,
               v ? ", last: " : "",
               v ? atomic_load(&rt_what) : "");
        if (v) fails++;
    } else {
        printf("realtime guard: off (sanitizer build)\n");
    }
    free(input), free(out), free(out2);
    lilv_world_free(world);
    if (fails) {
        fprintf(stderr, "lv2host: %d failures\n", fails);
        return 1;
    }
    printf("lv2host: scenario %s at %g Hz passed\n", scenario, rate);
    return 0;
}
