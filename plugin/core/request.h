/*
 * plugin/core/request.h - the life of one continuation request, as the musician sees it.
 *
 * idle -> connecting -> queued -> generating -> streaming -> done, and error from anywhere
 * busy. Cancel returns a busy request to idle; a new request may start from idle, done or
 * error (that is "retry when asked"). The non-realtime side drives it from daemon events; the
 * value is published to the realtime side as an atomic and shown on the state output port.
 */
#ifndef ENCORE_PLUGIN_REQUEST_H
#define ENCORE_PLUGIN_REQUEST_H

#include <stdbool.h>

enum req_state {
    REQ_IDLE = 0,
    REQ_CONNECTING,
    REQ_QUEUED,
    REQ_GENERATING,
    REQ_STREAMING,
    REQ_DONE,
    REQ_ERROR,
    REQ_N_STATES
};

enum req_event {
    REQ_EV_SUBMIT = 0, /* continue pressed with a riff */
    REQ_EV_CONNECTED,  /* socket open, request sent */
    REQ_EV_QUEUED,     /* the daemon accepted and queued the job */
    REQ_EV_STARTED,    /* the job is running on the GPU */
    REQ_EV_AUDIO,      /* first audio of the job arrived */
    REQ_EV_FINISHED,   /* every requested level arrived */
    REQ_EV_FAILED,     /* connect failed, daemon error, connection lost */
    REQ_EV_CANCEL,     /* the musician cancelled */
    REQ_N_EVENTS
};

/* The next state, or -1 when `ev` makes no sense in `s` (the caller keeps `s`). */
int req_next(enum req_state s, enum req_event ev);

bool req_busy(enum req_state s);
const char *req_state_name(enum req_state s);

#endif
