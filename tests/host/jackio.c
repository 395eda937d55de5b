/*
 * jackio - the project's JACK test client (after the reference harness jtio.c): timebase
 * master at a fixed tempo (4/4), plays a test signal into DEST ports and records SRC ports
 * indexed by the transport frame, so results are on the timeline, sample-exact.
 *   pass 1: locate 0, roll; play a 220 Hz sine (amplitude 0.5) for SECONDS; stop.
 *   wait until GO_FILE exists (the test's job finished), then
 *   pass 2: locate 0, roll; play silence, record SRC for SECONDS into OUT.wav; stop.
 * Prints "pass1 rolling", "pass1 done", "pass2 rolling", "pass2 done" as it goes.
 * usage: jackio -n NAME -s SECONDS -g GO_FILE -o OUT.wav -p DEST... -r SRC... [-b BPM]
 */
#include <jack/jack.h>
#include <jack/transport.h>
#include <math.h>
#include <stdbool.h>
#include <sndfile.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXP 4
static jack_client_t *cl;
static jack_port_t *outp[MAXP], *inp[MAXP];
static int nout, nin;
static double bpm = 120, rate;
static int64_t total;
static float *rec;
static atomic_int pass; /* 1, 2; 0 = idle */
static atomic_llong last_frame;

static void timebase(jack_transport_state_t st,
                     jack_nframes_t n,
                     jack_position_t *pos,
                     int newp,
                     void *arg)
{
    (void)st, (void)n, (void)newp, (void)arg;
    double beats          = (double)pos->frame / (pos->frame_rate * 60.0 / bpm);
    pos->valid            = JackPositionBBT;
    pos->beats_per_bar    = 4;
    pos->beat_type        = 4;
    pos->ticks_per_beat   = 1920000; /* fine ticks: bar lines exact to the frame */
    pos->beats_per_minute = bpm;
    pos->bar              = (int32_t)(beats / 4) + 1;
    double in_bar         = fmod(beats, 4.0);
    pos->beat             = (int32_t)in_bar + 1;
    pos->tick             = (int32_t)((in_bar - floor(in_bar)) * 1920);
    pos->bar_start_tick   = 0;
}

static int process(jack_nframes_t n, void *arg)
{
    (void)arg;
    jack_position_t pos;
    jack_transport_state_t ts = jack_transport_query(cl, &pos);
    int p                     = atomic_load(&pass);
    bool rolling              = ts == JackTransportRolling;
    for (int c = 0; c < nout; c++) {
        float *o = jack_port_get_buffer(outp[c], n);
        for (jack_nframes_t i = 0; i < n; i++) {
            int64_t f = (int64_t)pos.frame + i;
            o[i]      = (rolling && p == 1 && f < total)
                          ? 0.5f * sinf(2.0f * (float)M_PI * 220.0f * (float)f / (float)rate)
                          : 0.0f;
        }
    }
    if (rolling && p == 2)
        for (int c = 0; c < nin; c++) {
            float *in = jack_port_get_buffer(inp[c], n);
            for (jack_nframes_t i = 0; i < n; i++) {
                int64_t f = (int64_t)pos.frame + i;
                if (f < total) rec[f * nin + c] = in[i];
            }
        }
    if (rolling) atomic_store(&last_frame, (long long)pos.frame + n);
    return 0;
}

static void run_pass(int p)
{
    jack_transport_stop(cl);
    usleep(50000);
    jack_transport_locate(cl, 0);
    usleep(50000);
    atomic_store(&last_frame, 0);
    atomic_store(&pass, p);
    jack_transport_start(cl);
    printf("pass%d rolling\n", p);
    fflush(stdout);
    while (atomic_load(&last_frame) < total)
        usleep(5000);
    jack_transport_stop(cl);
    atomic_store(&pass, 0);
    printf("pass%d done\n", p);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *name = "jackio", *go = NULL, *out = NULL, *dests[MAXP], *srcs[MAXP];
    int nd = 0, ns = 0, o;
    double seconds = 8;
    while ((o = getopt(argc, argv, "n:s:g:o:p:r:b:")) != -1) {
        switch (o) {
        case 'n':
            name = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'g':
            go = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'b':
            bpm = atof(optarg);
            break;
        case 'p':
            if (nd < MAXP) dests[nd++] = optarg;
            break;
        case 'r':
            if (ns < MAXP) srcs[ns++] = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!go || !out || !ns) {
        fprintf(stderr, "usage: jackio -n NAME -s SECONDS -g GO_FILE -o OUT.wav -p DEST -r SRC\n");
        return 2;
    }
    jack_status_t st;
    cl = jack_client_open(name, JackNoStartServer, &st);
    if (!cl) {
        fprintf(stderr, "jackio: no JACK server (0x%x)\n", st);
        return 1;
    }
    rate  = jack_get_sample_rate(cl);
    total = (int64_t)llround(seconds * rate);
    nout  = nd;
    nin   = ns;
    rec   = calloc((size_t)(total * nin), sizeof(float));
    char pn[32];
    for (int c = 0; c < nout; c++) {
        snprintf(pn, sizeof pn, "out_%d", c + 1);
        outp[c] = jack_port_register(cl, pn, JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    }
    for (int c = 0; c < nin; c++) {
        snprintf(pn, sizeof pn, "in_%d", c + 1);
        inp[c] = jack_port_register(cl, pn, JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    }
    jack_set_process_callback(cl, process, NULL);
    if (jack_set_timebase_callback(cl, 0, timebase, NULL) || jack_activate(cl)) {
        fprintf(stderr, "jackio: cannot become timebase master or activate\n");
        return 1;
    }
    for (int k = 0; k < nd; k++)
        if (jack_connect(cl, jack_port_name(outp[k]), dests[k]))
            fprintf(stderr, "jackio: connect -> %s failed\n", dests[k]);
    for (int k = 0; k < ns; k++)
        if (jack_connect(cl, srcs[k], jack_port_name(inp[k])))
            fprintf(stderr, "jackio: connect %s -> failed\n", srcs[k]);
    printf("jackio: %.0f Hz, period %u\n", rate, jack_get_buffer_size(cl));
    fflush(stdout);
    run_pass(1);
    struct stat sb;
    for (int i = 0; stat(go, &sb) != 0; i++) {
        if (i > 6000) { /* 10 minutes */
            fprintf(stderr, "jackio: %s never appeared\n", go);
            return 1;
        }
        usleep(100000);
    }
    run_pass(2);
    jack_deactivate(cl);
    jack_client_close(cl);
    SF_INFO so  = { .samplerate = (int)rate,
                    .channels   = nin,
                    .format     = SF_FORMAT_WAV | SF_FORMAT_FLOAT };
    SNDFILE *of = sf_open(out, SFM_WRITE, &so);
    if (!of) {
        fprintf(stderr, "jackio: cannot write %s\n", out);
        return 1;
    }
    sf_writef_float(of, rec, total);
    sf_close(of);
    return 0;
}
