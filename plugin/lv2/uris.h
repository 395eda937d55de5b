/*
 * plugin/lv2/uris.h - Encore's LV2 URIs and the mapped URIDs an instance uses (mapped once in
 * instantiate, as the LV2 book's eg-sampler does).
 *
 * The plugin URI is stable: sessions and presets refer to it. It lives under the reserved
 * .invalid top-level domain (RFC 2606) so it can never resolve to someone else's page.
 */
#ifndef ENCORE_LV2_URIS_H
#define ENCORE_LV2_URIS_H

#include <lv2/atom/atom.h>
#include <lv2/log/log.h>
#include <lv2/parameters/parameters.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/time/time.h>
#include <lv2/urid/urid.h>

#define ENCORE_URI "https://encore.invalid/lv2/encore"
#define ENCORE__artist ENCORE_URI "#artist"
#define ENCORE__genre ENCORE_URI "#genre"
#define ENCORE__lyrics ENCORE_URI "#lyrics"
#define ENCORE__socket ENCORE_URI "#socket"
#define ENCORE__modelSet ENCORE_URI "#modelSet"
#define ENCORE__message ENCORE_URI "#message"
#define ENCORE__riff ENCORE_URI "#riff"
#define ENCORE__riffStart ENCORE_URI "#riffStart"
#define ENCORE__take ENCORE_URI "#take" /* take1 .. take4: candidate audio files */
#define ENCORE__takeId ENCORE_URI "#takeId"
#define ENCORE__rate ENCORE_URI "#rate"

struct encore_uris {
    LV2_URID atom_Blank, atom_Object, atom_Sequence, atom_String, atom_Path, atom_Long, atom_Int,
      atom_Float, atom_Double, atom_Bool, atom_URID, atom_eventTransfer;
    LV2_URID patch_Set, patch_Get, patch_property, patch_value, patch_subject;
    LV2_URID time_Position, time_frame, time_speed, time_bar, time_barBeat, time_beatsPerBar,
      time_beatsPerMinute;
    LV2_URID str[5]; /* artist, genre, lyrics, socket, modelSet: same order as enum net_key */
    LV2_URID message, riff, riffStart, take[4], takeId, rate;
};

static inline void encore_map_uris(LV2_URID_Map *map, struct encore_uris *u)
{
    u->atom_Blank          = map->map(map->handle, LV2_ATOM__Blank);
    u->atom_Object         = map->map(map->handle, LV2_ATOM__Object);
    u->atom_Sequence       = map->map(map->handle, LV2_ATOM__Sequence);
    u->atom_String         = map->map(map->handle, LV2_ATOM__String);
    u->atom_Path           = map->map(map->handle, LV2_ATOM__Path);
    u->atom_Long           = map->map(map->handle, LV2_ATOM__Long);
    u->atom_Int            = map->map(map->handle, LV2_ATOM__Int);
    u->atom_Float          = map->map(map->handle, LV2_ATOM__Float);
    u->atom_Double         = map->map(map->handle, LV2_ATOM__Double);
    u->atom_Bool           = map->map(map->handle, LV2_ATOM__Bool);
    u->atom_URID           = map->map(map->handle, LV2_ATOM__URID);
    u->atom_eventTransfer  = map->map(map->handle, LV2_ATOM__eventTransfer);
    u->patch_Set           = map->map(map->handle, LV2_PATCH__Set);
    u->patch_Get           = map->map(map->handle, LV2_PATCH__Get);
    u->patch_property      = map->map(map->handle, LV2_PATCH__property);
    u->patch_value         = map->map(map->handle, LV2_PATCH__value);
    u->patch_subject       = map->map(map->handle, LV2_PATCH__subject);
    u->time_Position       = map->map(map->handle, LV2_TIME__Position);
    u->time_frame          = map->map(map->handle, LV2_TIME__frame);
    u->time_speed          = map->map(map->handle, LV2_TIME__speed);
    u->time_bar            = map->map(map->handle, LV2_TIME__bar);
    u->time_barBeat        = map->map(map->handle, LV2_TIME__barBeat);
    u->time_beatsPerBar    = map->map(map->handle, LV2_TIME__beatsPerBar);
    u->time_beatsPerMinute = map->map(map->handle, LV2_TIME__beatsPerMinute);
    u->str[0]              = map->map(map->handle, ENCORE__artist);
    u->str[1]              = map->map(map->handle, ENCORE__genre);
    u->str[2]              = map->map(map->handle, ENCORE__lyrics);
    u->str[3]              = map->map(map->handle, ENCORE__socket);
    u->str[4]              = map->map(map->handle, ENCORE__modelSet);
    u->message             = map->map(map->handle, ENCORE__message);
    u->riff                = map->map(map->handle, ENCORE__riff);
    u->riffStart           = map->map(map->handle, ENCORE__riffStart);
    u->take[0]             = map->map(map->handle, ENCORE__take "1");
    u->take[1]             = map->map(map->handle, ENCORE__take "2");
    u->take[2]             = map->map(map->handle, ENCORE__take "3");
    u->take[3]             = map->map(map->handle, ENCORE__take "4");
    u->takeId              = map->map(map->handle, ENCORE__takeId);
    u->rate                = map->map(map->handle, ENCORE__rate);
}

#endif
