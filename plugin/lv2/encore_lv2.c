/*
 * plugin/lv2/encore_lv2.c - the Encore LV2 plugin: a thin adapter over plugin/core (capture,
 * timeline, playback) and plugin/net (the link to encored on the instance's own thread).
 *
 * Threads (LV2 classes):
 *   run()                  audio: time:Position and patch messages from the control port,
 *                          core_process between events, output ports, notify messages. Never
 *                          allocates, locks, blocks or does I/O.
 *   work()/work_response   worker: string settings (patch:Set) into the net, patch:Get replies.
 *   save()/restore()       state: strings, riff and takes as WAV files via makePath/mapPath.
 *   net thread             daemon I/O (plugin/net); errors come back through a ring to run().
 *
 * Only lv2_descriptor is exported (hidden visibility + version script).
 */
#include "audiofile.h"
#include "core.h"
#include "net.h"
#include "ring.h"
#include "uris.h"

#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/core/lv2.h>
#include <lv2/core/lv2_util.h>
#include <lv2/log/logger.h>
#include <lv2/options/options.h>
#include <lv2/worker/worker.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum port {
    P_IN_L = 0,
    P_IN_R,
    P_OUT_L,
    P_OUT_R,
    P_CONTROL,
    P_NOTIFY,
    P_RECORD,
    P_CAPTURE_BARS,
    P_CAPTURE_LAST,
    P_CONTINUE,
    P_EXTEND,
    P_UPSAMPLE,
    P_CANCEL,
    P_ARTIST,
    P_GENRE,
    P_SECONDS,
    P_BARS,
    P_TEMPERATURE,
    P_CANDIDATES,
    P_SEED,
    P_CANDIDATE,
    P_MIX,
    P_FREEWHEEL,
    P_STATE,
    P_PROGRESS,
    P_ETA,
    P_N
};

#define MSG_TEXT 256
#define MSG_RING_BYTES 8192
#define RIFF_MAX_S 60.0
#define EXPORT_WAIT_S 30.0

/* worker requests (copied by the host) */
enum work_type { WORK_SET_STR = 1, WORK_GET_ALL };
struct work_hdr {
    enum work_type type;
    int key;
    uint32_t len; /* string bytes that follow, NUL included */
};

struct encore {
    const float *ports_in[P_N];
    float *ports_out[P_N];
    const LV2_Atom_Sequence *control;
    LV2_Atom_Sequence *notify;

    LV2_URID_Map *map;
    LV2_Worker_Schedule *schedule;
    LV2_Log_Logger logger;
    struct encore_uris uris;
    LV2_Atom_Forge forge;
    LV2_Atom_Forge_Frame notify_frame; /* the forge points at it during run() */

    double rate;
    uint32_t max_block;
    struct core *core;
    struct net *net;
    struct tl_pos pos;
    bool have_bpm, have_bar;

    /* net thread -> run(): message lines for the notify port */
    struct ring msgs;
    unsigned char msgs_buf[MSG_RING_BYTES];
    /* work_response -> run() (both audio thread): string values for the notify port */
    struct ring replies;
    unsigned char replies_buf[4 * NET_STR_MAX * 2];
};

static void on_net_message(void *user, int level, const char *text)
{
    struct encore *e = user;
    char line[MSG_TEXT];
    snprintf(line, sizeof line, "%s%s", level ? "error: " : "", text);
    ring_write(&e->msgs, line, sizeof line); /* dropped when run() is not called: fine */
    if (level)
        lv2_log_error(&e->logger, "encore: %s\n", text);
    else
        lv2_log_note(&e->logger, "encore: %s\n", text);
}

static LV2_Handle instantiate(const LV2_Descriptor *d,
                              double rate,
                              const char *bundle,
                              const LV2_Feature *const *features)
{
    (void)d, (void)bundle;
    struct encore *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    const LV2_Options_Option *options = NULL;
    LV2_Log_Log *log                  = NULL;
    const char *missing               = lv2_features_query(features,
                                             LV2_LOG__log,
                                             &log,
                                             false,
                                             LV2_URID__map,
                                             &e->map,
                                             true,
                                             LV2_WORKER__schedule,
                                             &e->schedule,
                                             true,
                                             LV2_OPTIONS__options,
                                             &options,
                                             false,
                                             NULL);
    lv2_log_logger_init(&e->logger, e->map, log);
    if (missing) {
        lv2_log_error(&e->logger, "encore: missing feature <%s>\n", missing);
        free(e);
        return NULL;
    }
    encore_map_uris(e->map, &e->uris);
    lv2_atom_forge_init(&e->forge, e->map);

    e->max_block     = CORE_MAX_BLOCK;
    LV2_URID max_len = e->map->map(e->map->handle, LV2_BUF_SIZE__maxBlockLength);
    for (const LV2_Options_Option *o = options; o && o->key; o++)
        if (o->key == max_len && o->type == e->uris.atom_Int && o->size == sizeof(int32_t)) {
            int32_t v = *(const int32_t *)o->value;
            if (v >= 1 && v <= CORE_MAX_BLOCK)
                e->max_block = (uint32_t)v;
            else
                lv2_log_warning(&e->logger,
                                "encore: maxBlockLength %d outside 1..%d, using %d\n",
                                v,
                                CORE_MAX_BLOCK,
                                CORE_MAX_BLOCK);
        }
    if (!(rate >= 8000.0 && rate <= 192000.0)) {
        lv2_log_error(&e->logger, "encore: sample rate %g Hz outside 8000..192000\n", rate);
        free(e);
        return NULL;
    }
    e->rate                = rate;
    struct core_config cfg = { .rate          = rate,
                               .max_block     = e->max_block,
                               .riff_max_s    = RIFF_MAX_S,
                               .export_wait_s = EXPORT_WAIT_S };
    ring_init(&e->msgs, e->msgs_buf, MSG_RING_BYTES);
    ring_init(&e->replies, e->replies_buf, sizeof e->replies_buf);
    e->core                = core_init(&cfg);
    struct net_config ncfg = { .client_name  = "encore.lv2",
                               .rate         = rate,
                               .finest_level = 0,
                               .on_message   = on_net_message,
                               .user         = e };
    e->net                 = e->core ? net_init(e->core, &ncfg) : NULL;
    if (!e->net) {
        lv2_log_error(&e->logger, "encore: out of memory\n");
        core_free(e->core);
        free(e);
        return NULL;
    }
    return e;
}

static void connect_port(LV2_Handle h, uint32_t port, void *data)
{
    struct encore *e = h;
    if (port == P_CONTROL)
        e->control = data;
    else if (port == P_NOTIFY)
        e->notify = data;
    else if (port == P_OUT_L || port == P_OUT_R || port == P_STATE || port == P_PROGRESS ||
             port == P_ETA)
        e->ports_out[port] = data;
    else if (port < P_N)
        e->ports_in[port] = data;
}

static float ctl(const struct encore *e, enum port p, float def)
{
    const float *v = e->ports_in[p];
    return v && isfinite(*v) ? *v : def;
}

static int ctl_int(const struct encore *e, enum port p, int def, int lo, int hi)
{
    float v = ctl(e, p, (float)def);
    long k  = lroundf(v);
    return k < lo ? lo : k > hi ? hi : (int)k;
}

static void read_position(struct encore *e, const LV2_Atom_Object *obj)
{
    const struct encore_uris *u = &e->uris;
    const LV2_Atom *frame = NULL, *speed = NULL, *bar = NULL, *beat = NULL, *bpb = NULL,
                   *bpm = NULL;
    lv2_atom_object_get(obj,
                        u->time_frame,
                        &frame,
                        u->time_speed,
                        &speed,
                        u->time_bar,
                        &bar,
                        u->time_barBeat,
                        &beat,
                        u->time_beatsPerBar,
                        &bpb,
                        u->time_beatsPerMinute,
                        &bpm,
                        0);
    struct tl_pos *p = &e->pos;
#define NUM(a, dst)                                                                                \
    do {                                                                                           \
        if ((a) && (a)->type == u->atom_Float)                                                     \
            dst = ((const LV2_Atom_Float *)(a))->body;                                             \
        else if ((a) && (a)->type == u->atom_Double)                                               \
            dst = ((const LV2_Atom_Double *)(a))->body;                                            \
        else if ((a) && (a)->type == u->atom_Long)                                                 \
            dst = (double)((const LV2_Atom_Long *)(a))->body;                                      \
        else if ((a) && (a)->type == u->atom_Int)                                                  \
            dst = ((const LV2_Atom_Int *)(a))->body;                                               \
    } while (0)
    double v = NAN;
    NUM(frame, v);
    p->frame     = isfinite(v) ? (int64_t)llround(v) : core_now(e->core);
    p->has_frame = true;
    v            = NAN;
    NUM(speed, v);
    if (isfinite(v)) p->speed = v;
    v = NAN;
    NUM(bpm, v);
    if (isfinite(v)) p->bpm = v, e->have_bpm = true;
    v = NAN;
    NUM(bpb, v);
    if (isfinite(v)) p->beats_per_bar = v;
    v = NAN;
    NUM(beat, v);
    if (isfinite(v)) p->bar_beat = v, e->have_bar = true;
    v = NAN;
    NUM(bar, v);
    if (isfinite(v)) p->bar = (int64_t)v;
#undef NUM
    p->has_bbt = e->have_bpm && e->have_bar && p->beats_per_bar >= 1.0;
    core_set_time(e->core, p);
}

static void read_patch(struct encore *e, const LV2_Atom_Object *obj)
{
    const struct encore_uris *u = &e->uris;
    if (obj->body.otype == u->patch_Get) {
        struct work_hdr w = { .type = WORK_GET_ALL };
        e->schedule->schedule_work(e->schedule->handle, sizeof w, &w);
        return;
    }
    const LV2_Atom *prop = NULL, *value = NULL;
    lv2_atom_object_get(obj, u->patch_property, &prop, u->patch_value, &value, 0);
    if (!prop || prop->type != u->atom_URID || !value || value->type != u->atom_String) return;
    LV2_URID key = ((const LV2_Atom_URID *)prop)->body;
    for (int k = 0; k < NET_N_KEYS; k++)
        if (key == u->str[k] && value->size <= NET_STR_MAX) {
            /* header + string in one buffer on the stack: schedule_work copies it */
            unsigned char buf[sizeof(struct work_hdr) + NET_STR_MAX + 1];
            struct work_hdr w = { .type = WORK_SET_STR, .key = k, .len = value->size };
            memcpy(buf, &w, sizeof w);
            memcpy(buf + sizeof w, LV2_ATOM_BODY_CONST(value), value->size);
            buf[sizeof w + value->size] = '\0';
            e->schedule->schedule_work(
              e->schedule->handle, (uint32_t)(sizeof w + value->size + 1), buf);
        }
}

static void write_replies(struct encore *e);

static void write_message(struct encore *e, const char *text)
{
    LV2_Atom_Forge *f = &e->forge;
    LV2_Atom_Forge_Frame fr;
    if (!lv2_atom_forge_frame_time(f, 0) || !lv2_atom_forge_object(f, &fr, 0, e->uris.patch_Set))
        return;
    lv2_atom_forge_key(f, e->uris.patch_property);
    lv2_atom_forge_urid(f, e->uris.message);
    lv2_atom_forge_key(f, e->uris.patch_value);
    lv2_atom_forge_string(f, text, (uint32_t)strlen(text));
    lv2_atom_forge_pop(f, &fr);
}

static void run(LV2_Handle h, uint32_t n)
{
    struct encore *e       = h;
    struct core_controls c = {
        .record       = ctl(e, P_RECORD, 0) > 0.5f,
        .capture_last = ctl(e, P_CAPTURE_LAST, 0) > 0.5f,
        .capture_bars = ctl_int(e, P_CAPTURE_BARS, 4, 1, 64),
        .request      = ctl(e, P_CONTINUE, 0) > 0.5f,
        .extend       = ctl(e, P_EXTEND, 0) > 0.5f,
        .upsample     = ctl(e, P_UPSAMPLE, 0) > 0.5f,
        .cancel       = ctl(e, P_CANCEL, 0) > 0.5f,
        .candidate    = ctl_int(e, P_CANDIDATE, 1, 1, CORE_MAX_CANDIDATES),
        .mix          = ctl(e, P_MIX, 0.5f),
        .freewheel    = ctl(e, P_FREEWHEEL, 0) > 0.5f,
        .params       = { .add_seconds  = ctl(e, P_SECONDS, 10),
                          .add_bars     = ctl_int(e, P_BARS, 0, 0, 64),
                          .temperature  = ctl(e, P_TEMPERATURE, 0.98f),
                          .n_candidates = ctl_int(e, P_CANDIDATES, 1, 1, CORE_MAX_CANDIDATES),
                          .seed         = ctl_int(e, P_SEED, 0, 0, 1000000),
                          .artist_menu  = ctl_int(e, P_ARTIST, 0, 0, 1000),
                          .genre_menu   = ctl_int(e, P_GENRE, 0, 0, 1000) },
    };
    /* the notify sequence: set up the forge on the host's buffer */
    if (e->notify) {
        uint32_t cap = e->notify->atom.size;
        lv2_atom_forge_set_buffer(&e->forge, (uint8_t *)e->notify, cap);
        lv2_atom_forge_sequence_head(&e->forge, &e->notify_frame, 0);
    }

    const float *in_l = e->ports_in[P_IN_L], *in_r = e->ports_in[P_IN_R];
    float *out_l = e->ports_out[P_OUT_L], *out_r = e->ports_out[P_OUT_R];
    uint32_t done = 0;
    if (e->control && e->control->atom.type == e->uris.atom_Sequence) {
        LV2_ATOM_SEQUENCE_FOREACH (e->control, ev) {
            uint32_t t = ev->time.frames < n ? (uint32_t)ev->time.frames : n;
            while (t > done) { /* split at the event: time changes land on their sample */
                uint32_t k = t - done > e->max_block ? e->max_block : t - done;
                core_process(e->core,
                             &c,
                             in_l ? in_l + done : NULL,
                             in_r ? in_r + done : NULL,
                             out_l ? out_l + done : NULL,
                             out_r ? out_r + done : NULL,
                             k);
                done += k;
            }
            if (ev->body.type != e->uris.atom_Object && ev->body.type != e->uris.atom_Blank)
                continue;
            const LV2_Atom_Object *obj = (const LV2_Atom_Object *)&ev->body;
            if (obj->body.otype == e->uris.time_Position)
                read_position(e, obj);
            else if (obj->body.otype == e->uris.patch_Set || obj->body.otype == e->uris.patch_Get)
                read_patch(e, obj);
        }
    }
    while (done < n) {
        uint32_t k = n - done > e->max_block ? e->max_block : n - done;
        core_process(e->core,
                     &c,
                     in_l ? in_l + done : NULL,
                     in_r ? in_r + done : NULL,
                     out_l ? out_l + done : NULL,
                     out_r ? out_r + done : NULL,
                     k);
        done += k;
    }

    struct core_status st;
    core_status(e->core, &st);
    if (e->ports_out[P_STATE]) *e->ports_out[P_STATE] = (float)st.req_state;
    if (e->ports_out[P_PROGRESS]) *e->ports_out[P_PROGRESS] = 100.0f * st.progress;
    if (e->ports_out[P_ETA]) *e->ports_out[P_ETA] = st.eta_s < 0 ? -1.0f : st.eta_s;
    char line[MSG_TEXT];
    while (e->notify && ring_read(&e->msgs, line, sizeof line))
        write_message(e, line);
    if (e->notify) write_replies(e);
}

/* --- worker --------------------------------------------------------------------------------*/

static LV2_Worker_Status work(LV2_Handle h,
                              LV2_Worker_Respond_Function respond,
                              LV2_Worker_Respond_Handle rh,
                              uint32_t size,
                              const void *data)
{
    struct encore *e = h;
    struct work_hdr w;
    if (size < sizeof w) return LV2_WORKER_ERR_UNKNOWN;
    memcpy(&w, data, sizeof w);
    if (w.type == WORK_SET_STR && w.key >= 0 && w.key < NET_N_KEYS &&
        size == sizeof w + w.len + 1) {
        const char *s = (const char *)data + sizeof w;
        net_set_str(e->net, (enum net_key)w.key, s);
        return LV2_WORKER_SUCCESS;
    }
    if (w.type == WORK_GET_ALL) { /* reply with every string, one response each */
        for (int k = 0; k < NET_N_KEYS; k++) {
            char buf[sizeof(struct work_hdr) + NET_STR_MAX];
            char val[NET_STR_MAX];
            net_get_str(e->net, (enum net_key)k, val, sizeof val);
            struct work_hdr r = { .type = WORK_SET_STR, .key = k, .len = (uint32_t)strlen(val) };
            memcpy(buf, &r, sizeof r);
            memcpy(buf + sizeof r, val, r.len + 1);
            respond(rh, (uint32_t)(sizeof r + r.len + 1), buf);
        }
        return LV2_WORKER_SUCCESS;
    }
    return LV2_WORKER_ERR_UNKNOWN;
}

static LV2_Worker_Status work_response(LV2_Handle h, uint32_t size, const void *data)
{
    struct encore *e = h;
    struct work_hdr w;
    if (size < sizeof w) return LV2_WORKER_SUCCESS;
    memcpy(&w, data, sizeof w);
    if (w.type != WORK_SET_STR || w.key < 0 || w.key >= NET_N_KEYS || size != sizeof w + w.len + 1)
        return LV2_WORKER_SUCCESS;
    /* run() writes it: responses may come before run() has set up the notify buffer */
    if (ring_write_space(&e->replies) >= sizeof size + size) {
        ring_write(&e->replies, &size, sizeof size);
        ring_write(&e->replies, data, size);
    }
    return LV2_WORKER_SUCCESS;
}

static void write_replies(struct encore *e)
{
    uint32_t size;
    unsigned char buf[sizeof(struct work_hdr) + NET_STR_MAX + 1];
    while (ring_peek(&e->replies, &size, sizeof size)) {
        if (size > sizeof buf || ring_read_space(&e->replies) < sizeof size + size) return;
        ring_read(&e->replies, &size, sizeof size);
        ring_read(&e->replies, buf, size);
        struct work_hdr w;
        memcpy(&w, buf, sizeof w);
        LV2_Atom_Forge *f = &e->forge;
        LV2_Atom_Forge_Frame fr;
        if (!lv2_atom_forge_frame_time(f, 0) ||
            !lv2_atom_forge_object(f, &fr, 0, e->uris.patch_Set))
            return;
        lv2_atom_forge_key(f, e->uris.patch_property);
        lv2_atom_forge_urid(f, e->uris.str[w.key]);
        lv2_atom_forge_key(f, e->uris.patch_value);
        lv2_atom_forge_string(f, (const char *)buf + sizeof w, w.len);
        lv2_atom_forge_pop(f, &fr);
    }
}

/* --- state ---------------------------------------------------------------------------------*/

static LV2_State_Status save(LV2_Handle h,
                             LV2_State_Store_Function store,
                             LV2_State_Handle sh,
                             uint32_t flags,
                             const LV2_Feature *const *features)
{
    (void)flags;
    struct encore *e               = h;
    const struct encore_uris *u    = &e->uris;
    LV2_State_Map_Path *map_path   = NULL;
    LV2_State_Make_Path *make_path = NULL;
    lv2_features_query(
      features, LV2_STATE__mapPath, &map_path, false, LV2_STATE__makePath, &make_path, false, NULL);
    for (int k = 0; k < NET_N_KEYS; k++) {
        char val[NET_STR_MAX];
        net_get_str(e->net, (enum net_key)k, val, sizeof val);
        store(sh,
              u->str[k],
              val,
              strlen(val) + 1,
              u->atom_String,
              LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
    }
    struct net_snapshot s;
    net_snapshot(e->net, &s);
    LV2_State_Status status = LV2_STATE_SUCCESS;
    if (s.riff_frames > 0 && (!make_path || !map_path)) {
        lv2_log_warning(&e->logger,
                        "encore: host offers no state:makePath/mapPath: riff and takes are not "
                        "saved with this session\n");
    } else if (s.riff_frames > 0) {
        double rate = e->rate;
        store(sh, u->rate, &rate, sizeof rate, u->atom_Double, LV2_STATE_IS_POD);
        int64_t v = s.riff_start;
        store(sh, u->riffStart, &v, sizeof v, u->atom_Long, LV2_STATE_IS_POD);
        v = s.take_id;
        store(sh, u->takeId, &v, sizeof v, u->atom_Long, LV2_STATE_IS_POD);
        for (int k = -1; k < s.n_cand; k++) {
            char name[32], why[300];
            if (k < 0)
                snprintf(name, sizeof name, "riff.wav");
            else
                snprintf(name, sizeof name, "take-%d.wav", k + 1);
            char *path = make_path->path(make_path->handle, name);
            if (!path) continue;
            const float *data = k < 0 ? s.riff : s.take[k];
            int64_t frames    = k < 0 ? s.riff_frames : s.take_frames;
            if (data && audiofile_write(path, data, frames, e->rate, why, sizeof why)) {
                char *apath = map_path->abstract_path(map_path->handle, path);
                if (apath)
                    store(sh,
                          k < 0 ? u->riff : u->take[k],
                          apath,
                          strlen(apath) + 1,
                          u->atom_Path,
                          LV2_STATE_IS_POD);
                free(apath);
            } else {
                lv2_log_error(&e->logger, "encore: %s\n", data ? why : "out of memory");
                status = LV2_STATE_ERR_UNKNOWN;
            }
            free(path);
        }
    }
    net_snapshot_free(&s);
    return status;
}

static const void *get_typed(LV2_State_Retrieve_Function retrieve,
                             LV2_State_Handle sh,
                             LV2_URID key,
                             LV2_URID type,
                             size_t *size)
{
    uint32_t t = 0, flags = 0;
    const void *v = retrieve(sh, key, size, &t, &flags);
    return v && t == type ? v : NULL;
}

static LV2_State_Status restore(LV2_Handle h,
                                LV2_State_Retrieve_Function retrieve,
                                LV2_State_Handle sh,
                                uint32_t flags,
                                const LV2_Feature *const *features)
{
    (void)flags;
    struct encore *e            = h;
    const struct encore_uris *u = &e->uris;
    size_t size                 = 0;
    for (int k = 0; k < NET_N_KEYS; k++) {
        const char *s = get_typed(retrieve, sh, u->str[k], u->atom_String, &size);
        if (s && size >= 1 && size <= NET_STR_MAX && s[size - 1] == '\0')
            net_set_str(e->net, (enum net_key)k, s);
    }
    const char *riff_path = get_typed(retrieve, sh, u->riff, u->atom_Path, &size);
    if (!riff_path) /* a preset: settings only, the riff and takes stay */
        return LV2_STATE_SUCCESS;
    LV2_State_Map_Path *map_path = NULL;
    lv2_features_query(features, LV2_STATE__mapPath, &map_path, false, NULL);
    const int64_t *start   = get_typed(retrieve, sh, u->riffStart, u->atom_Long, &size);
    const int64_t *take_id = get_typed(retrieve, sh, u->takeId, u->atom_Long, &size);
    const char *paths[1 + CORE_MAX_CANDIDATES] = { riff_path };
    int n_cand                                 = 0;
    for (int k = 0; k < CORE_MAX_CANDIDATES; k++)
        if ((paths[1 + k] = get_typed(retrieve, sh, u->take[k], u->atom_Path, &size)))
            n_cand = k + 1;
    float *audio[1 + CORE_MAX_CANDIDATES]   = { 0 };
    int64_t frames[1 + CORE_MAX_CANDIDATES] = { 0 };
    LV2_State_Status status                 = LV2_STATE_SUCCESS;
    for (int k = 0; k <= n_cand; k++) {
        if (!paths[k]) {
            status = LV2_STATE_ERR_NO_PROPERTY;
            break;
        }
        char *abs =
          map_path ? map_path->absolute_path(map_path->handle, paths[k]) : strdup(paths[k]);
        char why[400];
        audio[k] =
          abs ? audiofile_read(abs, e->rate, (int64_t)(3600 * e->rate), &frames[k], why, sizeof why)
              : NULL;
        if (!audio[k]) {
            lv2_log_error(&e->logger, "encore: restore: %s\n", abs ? why : "no path");
            status = LV2_STATE_ERR_UNKNOWN;
        }
        free(abs);
        if (k > 1 && audio[k] && frames[k] != frames[1]) status = LV2_STATE_ERR_BAD_TYPE;
        if (status != LV2_STATE_SUCCESS) break;
    }
    if (status == LV2_STATE_SUCCESS && !net_restore(e->net,
                                                    audio[0],
                                                    frames[0],
                                                    start ? *start : 0,
                                                    n_cand,
                                                    (const float *const *)(audio + 1),
                                                    n_cand ? frames[1] : 0,
                                                    take_id ? *take_id : -1)) {
        lv2_log_error(&e->logger, "encore: restore: riff too long or out of memory\n");
        status = LV2_STATE_ERR_UNKNOWN;
    }
    for (int k = 0; k <= CORE_MAX_CANDIDATES; k++)
        free(audio[k]);
    return status;
}

static const void *extension_data(const char *uri)
{
    static const LV2_Worker_Interface worker = { work, work_response, NULL };
    static const LV2_State_Interface state   = { save, restore };
    if (!strcmp(uri, LV2_WORKER__interface)) return &worker;
    if (!strcmp(uri, LV2_STATE__interface)) return &state;
    return NULL;
}

static void cleanup(LV2_Handle h)
{
    struct encore *e = h;
    net_free(e->net);
    core_free(e->core);
    free(e);
}

static const LV2_Descriptor descriptor = { ENCORE_URI, instantiate, connect_port, NULL,
                                           run,        NULL,        cleanup,      extension_data };

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index)
{
    return index == 0 ? &descriptor : NULL;
}
