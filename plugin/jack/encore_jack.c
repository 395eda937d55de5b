/*
 * plugin/jack/encore_jack.c - encore-jack: the Encore core as a JACK client (a thin adapter,
 * like DPF's JACK wrapper). Ports: in_l, in_r, out_l, out_r (audio) and midi_in; follows
 * JACK transport (frame, rolling, BBT from the timebase master); driven from the command line,
 * from an interactive terminal (one command per line on stdin) and from MIDI (notes or CCs,
 * e.g. a foot switch). The session's riff and takes are saved as WAV files on request and at
 * exit.
 *
 * Threads: JACK's process thread (core realtime side; reads atomics the terminal sets), the
 * net thread (plugin/net), and the main thread (terminal, status lines, saving takes).
 */
#include "audiofile.h"
#include "core.h"
#include "curated.h"
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <jack/jack.h>
#include <jack/midiport.h>
#include <jack/transport.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum action { A_RECORD = 0, A_CAPTURE, A_CONTINUE, A_EXTEND, A_UPSAMPLE, A_CANCEL, A_NEXT, A_N };
static const char *const action_names[A_N] = { "record",   "capture", "continue", "extend",
                                               "upsample", "cancel",  "next" };

struct midi_map {
    int kind; /* 0 note, 1 cc */
    int number;
    enum action action;
};

static struct {
    jack_client_t *client;
    jack_port_t *in_l, *in_r, *out_l, *out_r, *midi;
    struct core *core;
    struct net *net;
    bool use_transport;
    atomic_bool record;
    atomic_int pulses[A_N]; /* triggers from the terminal, consumed by process() */
    atomic_int candidate;
    _Atomic float mix;
    struct core_req_params params;
    int capture_bars;
    struct midi_map map[16];
    int n_map;
    bool trig_prev[A_N];
    bool cc_down[128];
} g;

static volatile sig_atomic_t quit;
static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void act(enum action a) /* any thread except process(): atomics only */
{
    if (a == A_RECORD)
        atomic_store(&g.record, !atomic_load(&g.record));
    else if (a == A_NEXT)
        atomic_store(&g.candidate, atomic_load(&g.candidate) % g.params.n_candidates + 1);
    else
        atomic_fetch_add(&g.pulses[a], 1);
}

static void midi_in(jack_nframes_t n)
{
    void *buf      = jack_port_get_buffer(g.midi, n);
    uint32_t count = jack_midi_get_event_count(buf);
    for (uint32_t i = 0; i < count; i++) {
        jack_midi_event_t ev;
        if (jack_midi_event_get(&ev, buf, i) || ev.size < 3) continue;
        int status = ev.buffer[0] & 0xF0, num = ev.buffer[1] & 0x7F, val = ev.buffer[2];
        for (int k = 0; k < g.n_map; k++) {
            const struct midi_map *m = &g.map[k];
            if (m->number != num) continue;
            if (m->kind == 0 && status == 0x90 && val > 0) {
                act(m->action);
            } else if (m->kind == 1 && status == 0xB0) { /* a switch: act when pressed */
                bool down = val >= 64;
                if (down && !g.cc_down[num]) act(m->action);
                g.cc_down[num] = down;
            }
        }
    }
}

static int process(jack_nframes_t n, void *arg)
{
    (void)arg;
    midi_in(n);
    if (g.use_transport) {
        jack_position_t pos;
        jack_transport_state_t ts = jack_transport_query(g.client, &pos);
        struct tl_pos p           = { .has_frame = true,
                                      .frame     = pos.frame,
                                      .speed     = ts == JackTransportRolling ? 1.0 : 0.0 };
        if ((pos.valid & JackPositionBBT) && pos.beats_per_minute > 0 && pos.beats_per_bar > 0) {
            /* Tempo and metre from the timebase master; bar lines from the frame, bar 1 at
             * frame 0: JACK has no tempo map, and a master's BBT is rounded to ticks and goes
             * stale when it misses a cycle, which would move the bar lines. */
            double beats    = (double)pos.frame * pos.beats_per_minute / (60.0 * pos.frame_rate);
            p.has_bbt       = true;
            p.bpm           = pos.beats_per_minute;
            p.beats_per_bar = pos.beats_per_bar;
            p.bar           = (int64_t)floor(beats / pos.beats_per_bar);
            p.bar_beat      = beats - (double)p.bar * pos.beats_per_bar;
        }
        core_set_time(g.core, &p);
    }
    struct core_controls c = { .record       = atomic_load(&g.record),
                               .capture_bars = g.capture_bars,
                               .candidate    = atomic_load(&g.candidate),
                               .mix          = atomic_load(&g.mix),
                               .params       = g.params };
    bool *trig[A_N] = { NULL, &c.capture_last, &c.request, &c.extend, &c.upsample, &c.cancel };
    for (int a = A_CAPTURE; a <= A_CANCEL; a++) {
        /* a pulse is one cycle high (then one low, so repeated presses make edges) */
        bool on = false;
        if (!g.trig_prev[a] && atomic_load(&g.pulses[a]) > 0) {
            atomic_fetch_sub(&g.pulses[a], 1);
            on = true;
        }
        *trig[a]       = on;
        g.trig_prev[a] = on;
    }
    core_process(g.core,
                 &c,
                 jack_port_get_buffer(g.in_l, n),
                 jack_port_get_buffer(g.in_r, n),
                 jack_port_get_buffer(g.out_l, n),
                 jack_port_get_buffer(g.out_r, n),
                 n);
    return 0;
}

static void on_message(void *user, int level, const char *text)
{
    (void)user;
    fprintf(level ? stderr : stdout, "%s%s\n", level ? "error: " : "", text);
    fflush(level ? stderr : stdout);
}

static int save_takes(const char *dir, double rate)
{
    struct net_snapshot s;
    net_snapshot(g.net, &s);
    mkdir(dir, 0755);
    char path[4096], why[512];
    int n      = 0;
    time_t now = time(NULL);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    if (s.riff_frames > 0) {
        snprintf(path, sizeof path, "%s/%s-riff.wav", dir, stamp);
        if (audiofile_write(path, s.riff, s.riff_frames, rate, why, sizeof why))
            printf("saved %s\n", path), n++;
        else
            fprintf(stderr, "error: %s\n", why);
    }
    for (int k = 0; k < s.n_cand; k++) {
        if (!s.take[k]) continue;
        snprintf(path, sizeof path, "%s/%s-take-%d.wav", dir, stamp, k + 1);
        if (audiofile_write(path, s.take[k], s.take_frames, rate, why, sizeof why))
            printf("saved %s (starts at frame %lld)\n", path, (long long)s.take_start), n++;
        else
            fprintf(stderr, "error: %s\n", why);
    }
    if (!n) printf("nothing to save yet\n");
    fflush(stdout);
    net_snapshot_free(&s);
    return n;
}

static bool parse_map(const char *spec) /* "note:60=record" or "cc:64=continue" */
{
    char kind[8], action[32];
    int num;
    if (g.n_map >= 16 || sscanf(spec, "%7[a-z]:%d=%31s", kind, &num, action) != 3 || num < 0 ||
        num > 127)
        return false;
    for (int a = 0; a < A_N; a++)
        if (!strcmp(action, action_names[a])) {
            g.map[g.n_map++] = (struct midi_map){ strcmp(kind, "cc") == 0, num, (enum action)a };
            return !strcmp(kind, "cc") || !strcmp(kind, "note");
        }
    return false;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: encore-jack [options]\n"
            "Encore as a JACK client: record a riff, continue it with encored, hear the\n"
            "continuation in time with JACK transport.\n\n"
            "  -n, --name NAME         JACK client name (default encore)\n"
            "  -s, --socket PATH       encored socket (default: $ENCORE_SOCKET, then\n"
            "                          $XDG_RUNTIME_DIR/encore/encored.sock)\n"
            "  -a, --artist NAME       artist (default unknown)\n"
            "  -g, --genre NAME        genre (default unknown)\n"
            "  -L, --lyrics TEXT       lyrics (lyrics models)\n"
            "  -m, --model-set NAME    the daemon's model set\n"
            "  -t, --seconds S         seconds to add (default 10)\n"
            "  -b, --bars N            bars to add at the transport tempo (overrides -t)\n"
            "  -T, --temperature T     sampling temperature (default 0.98)\n"
            "  -c, --candidates N      candidates 1..4 (default 1)\n"
            "      --seed N            seed (default: the daemon picks)\n"
            "      --capture-bars N    bars taken by 'capture' (default 4)\n"
            "  -x, --mix X             0 input only, 0.5 both, 1 continuation only (0.5)\n"
            "  -d, --takes-dir DIR     where 'save' writes WAV files (default encore-takes)\n"
            "  -i, --connect-in PORT   connect PORT to in_l, then in_r (repeatable)\n"
            "  -o, --connect-out PORT  connect out_l, then out_r to PORT (repeatable)\n"
            "  -M, --midi SPEC         map MIDI to an action: note:60=record, cc:64=continue\n"
            "                          (repeatable; default cc:64=record note:60=record\n"
            "                          note:62=continue note:64=cancel note:65=next)\n"
            "      --no-transport      ignore JACK transport: run on our own clock\n"
            "  -h, --help\n\n"
            "Commands (stdin, one per line): record (toggle), capture, continue, extend,\n"
            "upsample, cancel, next, candidate N, mix X, seconds S, artist NAME, genre NAME,\n"
            "save, status, quit. Ports: NAME:in_l NAME:in_r NAME:out_l NAME:out_r NAME:midi_in.\n");
}

static void command(char *line, const char *takes_dir, double rate)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *arg                   = strchr(line, ' ');
    if (arg) *arg++ = '\0';
    for (int a = 0; a < A_N; a++)
        if (!strcmp(line, action_names[a])) {
            act((enum action)a);
            if (a == A_RECORD) printf("record %s\n", atomic_load(&g.record) ? "on" : "off");
            fflush(stdout);
            return;
        }
    if (!strcmp(line, "candidate") && arg)
        atomic_store(&g.candidate, atoi(arg) < 1 ? 1 : atoi(arg) > 4 ? 4 : atoi(arg));
    else if (!strcmp(line, "mix") && arg)
        atomic_store(&g.mix, (float)atof(arg));
    else if (!strcmp(line, "seconds") && arg)
        g.params.add_seconds = (float)atof(arg); /* read by process(): a torn float is fine */
    else if (!strcmp(line, "artist") && arg)
        net_set_str(g.net, NET_ARTIST, arg);
    else if (!strcmp(line, "genre") && arg)
        net_set_str(g.net, NET_GENRE, arg);
    else if (!strcmp(line, "save"))
        save_takes(takes_dir, rate);
    else if (!strcmp(line, "quit"))
        quit = 1;
    else if (!strcmp(line, "status")) {
        struct core_status st;
        core_status(g.core, &st);
        printf("state %s, progress %.0f%%, riff %.2f s at frame %lld, %d candidate(s)\n",
               req_state_name(st.req_state),
               st.progress * 100.0,
               (double)st.riff_frames / rate,
               (long long)st.riff_start,
               st.n_candidates);
    } else if (line[0])
        printf("unknown command '%s' (see --help)\n", line);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *name = "encore", *sock = "", *artist = "", *genre = "", *lyrics = "", *model = "",
               *takes_dir  = "encore-takes";
    const char *conn_in[2] = { 0 }, *conn_out[2] = { 0 };
    int n_in = 0, n_out = 0;
    g.use_transport = true;
    g.capture_bars  = 4;
    g.params =
      (struct core_req_params){ .add_seconds = 10, .temperature = 0.98f, .n_candidates = 1 };
    atomic_init(&g.candidate, 1);
    atomic_init(&g.mix, 0.5f);
    enum { O_SEED = 256, O_CAPTURE, O_NOTRANSPORT };
    static const struct option opts[] = {
        { "name", 1, 0, 'n' },        { "socket", 1, 0, 's' },
        { "artist", 1, 0, 'a' },      { "genre", 1, 0, 'g' },
        { "lyrics", 1, 0, 'L' },      { "model-set", 1, 0, 'm' },
        { "seconds", 1, 0, 't' },     { "bars", 1, 0, 'b' },
        { "temperature", 1, 0, 'T' }, { "candidates", 1, 0, 'c' },
        { "seed", 1, 0, O_SEED },     { "capture-bars", 1, 0, O_CAPTURE },
        { "mix", 1, 0, 'x' },         { "takes-dir", 1, 0, 'd' },
        { "connect-in", 1, 0, 'i' },  { "connect-out", 1, 0, 'o' },
        { "midi", 1, 0, 'M' },        { "no-transport", 0, 0, O_NOTRANSPORT },
        { "help", 0, 0, 'h' },        { 0, 0, 0, 0 }
    };
    int o;
    bool user_map = false;
    while ((o = getopt_long(argc, argv, "n:s:a:g:L:m:t:b:T:c:x:d:i:o:M:h", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            name = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'a':
            artist = optarg;
            break;
        case 'g':
            genre = optarg;
            break;
        case 'L':
            lyrics = optarg;
            break;
        case 'm':
            model = optarg;
            break;
        case 't':
            g.params.add_seconds = (float)atof(optarg);
            break;
        case 'b':
            g.params.add_bars = atoi(optarg);
            break;
        case 'T':
            g.params.temperature = (float)atof(optarg);
            break;
        case 'c':
            g.params.n_candidates = atoi(optarg);
            break;
        case O_SEED:
            g.params.seed = atoi(optarg);
            break;
        case O_CAPTURE:
            g.capture_bars = atoi(optarg);
            break;
        case 'x':
            atomic_store(&g.mix, (float)atof(optarg));
            break;
        case 'd':
            takes_dir = optarg;
            break;
        case 'i':
            if (n_in < 2) conn_in[n_in++] = optarg;
            break;
        case 'o':
            if (n_out < 2) conn_out[n_out++] = optarg;
            break;
        case 'M':
            if (!parse_map(optarg)) {
                fprintf(stderr,
                        "encore-jack: bad MIDI map '%s' (note:60=record, cc:64=continue)\n",
                        optarg);
                return 2;
            }
            user_map = true;
            break;
        case O_NOTRANSPORT:
            g.use_transport = false;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!(g.params.add_seconds > 0 && g.params.add_seconds <= 600) || g.params.add_bars < 0 ||
        g.params.add_bars > 64 || g.params.n_candidates < 1 || g.params.n_candidates > 4 ||
        g.capture_bars < 1 || g.capture_bars > 64 || optind != argc) {
        fprintf(stderr, "encore-jack: bad option value (see --help)\n");
        return 2;
    }
    if (!user_map) {
        parse_map("cc:64=record");
        parse_map("note:60=record");
        parse_map("note:62=continue");
        parse_map("note:64=cancel");
        parse_map("note:65=next");
    }
    jack_status_t status;
    g.client = jack_client_open(name, JackNoStartServer, &status);
    if (!g.client) {
        fprintf(stderr,
                "encore-jack: cannot connect to the JACK server (status 0x%x); is jackd "
                "running?\n",
                status);
        return 1;
    }
    double rate            = jack_get_sample_rate(g.client);
    struct core_config cfg = {
        .rate = rate, .max_block = CORE_MAX_BLOCK, .riff_max_s = 60, .export_wait_s = 0
    };
    g.core                 = core_init(&cfg);
    struct net_config ncfg = { .client_name = "encore-jack",
                               .rate        = rate,
                               .on_message  = on_message };
    g.net                  = g.core ? net_init(g.core, &ncfg) : NULL;
    if (!g.net) {
        fprintf(stderr, "encore-jack: cannot start (rate %g Hz or out of memory)\n", rate);
        jack_client_close(g.client);
        return 1;
    }
    net_set_str(g.net, NET_SOCKET, sock);
    net_set_str(g.net, NET_ARTIST, artist);
    net_set_str(g.net, NET_GENRE, genre);
    net_set_str(g.net, NET_LYRICS, lyrics);
    net_set_str(g.net, NET_MODEL_SET, model);
    g.in_l  = jack_port_register(g.client, "in_l", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    g.in_r  = jack_port_register(g.client, "in_r", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    g.out_l = jack_port_register(g.client, "out_l", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    g.out_r = jack_port_register(g.client, "out_r", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    g.midi  = jack_port_register(g.client, "midi_in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
    if (!g.in_l || !g.in_r || !g.out_l || !g.out_r || !g.midi ||
        jack_set_process_callback(g.client, process, NULL) || jack_activate(g.client)) {
        fprintf(stderr, "encore-jack: cannot register ports or activate\n");
        return 1;
    }
    jack_port_t *ins[2] = { g.in_l, g.in_r }, *outs[2] = { g.out_l, g.out_r };
    for (int k = 0; k < n_in; k++)
        if (jack_connect(g.client, conn_in[k], jack_port_name(ins[k])))
            fprintf(stderr, "encore-jack: cannot connect %s\n", conn_in[k]);
    for (int k = 0; k < n_out; k++)
        if (jack_connect(g.client, jack_port_name(outs[k]), conn_out[k]))
            fprintf(stderr, "encore-jack: cannot connect %s\n", conn_out[k]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("encore-jack: ready as '%s' at %.0f Hz (%s); type 'help' for commands\n",
           jack_get_client_name(g.client),
           rate,
           g.use_transport ? "following JACK transport" : "own clock");
    fflush(stdout);

    bool stdin_open = true;
    int last_state  = -1;
    char line[4096];
    while (!quit) {
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int r           = stdin_open ? poll(&p, 1, 100) : (usleep(100000), 0);
        if (r > 0) {
            if (!fgets(line, sizeof line, stdin))
                stdin_open = false; /* no terminal (a service): keep running until a signal */
            else if (!strncmp(line, "help", 4))
                usage(stdout);
            else
                command(line, takes_dir, rate);
        }
        struct core_status st;
        core_status(g.core, &st);
        if ((int)st.req_state != last_state) {
            last_state = (int)st.req_state;
            printf("state: %s\n", req_state_name(st.req_state));
            fflush(stdout);
        }
    }
    jack_deactivate(g.client);
    save_takes(takes_dir, rate);
    net_free(g.net);
    jack_client_close(g.client);
    core_free(g.core);
    return 0;
}
