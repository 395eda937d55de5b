/*
 * plugin/core/request.c - request state transitions (see request.h).
 */
#include "request.h"

bool req_busy(enum req_state s)
{
    return s == REQ_CONNECTING || s == REQ_QUEUED || s == REQ_GENERATING || s == REQ_STREAMING;
}

int req_next(enum req_state s, enum req_event ev)
{
    if ((unsigned)s >= REQ_N_STATES || (unsigned)ev >= REQ_N_EVENTS) return -1;
    switch (ev) {
    case REQ_EV_SUBMIT:
        return req_busy(s) ? -1 : REQ_CONNECTING;
    case REQ_EV_CONNECTED:
        return s == REQ_CONNECTING ? REQ_QUEUED : -1;
    case REQ_EV_QUEUED:
        return (s == REQ_CONNECTING || s == REQ_QUEUED) ? REQ_QUEUED : -1;
    case REQ_EV_STARTED:
        return (s == REQ_QUEUED || s == REQ_CONNECTING || s == REQ_GENERATING) ? REQ_GENERATING
                                                                               : -1;
    case REQ_EV_AUDIO:
        return (s == REQ_GENERATING || s == REQ_QUEUED || s == REQ_STREAMING) ? REQ_STREAMING : -1;
    case REQ_EV_FINISHED:
        return (s == REQ_STREAMING || s == REQ_GENERATING) ? REQ_DONE : -1;
    case REQ_EV_FAILED:
        return req_busy(s) ? REQ_ERROR : -1;
    case REQ_EV_CANCEL:
        return req_busy(s) ? REQ_IDLE : -1;
    default:
        return -1;
    }
}

const char *req_state_name(enum req_state s)
{
    static const char *const names[REQ_N_STATES] = { "idle",       "connecting", "queued",
                                                     "generating", "streaming",  "done",
                                                     "error" };
    return (unsigned)s < REQ_N_STATES ? names[s] : "?";
}
