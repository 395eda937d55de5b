#!/bin/sh
# encore.lv2 in jalv (console) on a dummy jackd (48 kHz, period 256) with a real encored:
# the plugin loads, the "Country / Alan Jackson" preset loads (artist and genre menus change),
# our jackio client (timebase master, 120 BPM 4/4) plays a sine in while record is toggled
# about 2 s and 6 s into the transport (snapped to the bar lines at 2 s and 6 s), continue is
# pressed, and after the job the transport is played again: jalv's output must hold the
# continuation from frame 288000 (6 s), plus at most one period of JACK loop latency.
set -u
BIN=$1 TESTS=$2 MODELS=$3 LV2=$4
if ! command -v jalv >/dev/null 2>&1; then
    echo "SKIP: jalv not installed"
    exit 77
fi
. "$(dirname "$0")/jack_common.sh"
t_start=$(date +%s.%N)
start_jackd 48000 256
start_encored
mkfifo "$tmp/ctl"
sleep 3600 >"$tmp/ctl" &
pids="$pids $!"
URI=https://encore.invalid/lv2/encore
ENCORE_SOCKET="$tmp/encored.sock" LV2_PATH="$LV2:/usr/lib/lv2" stdbuf -oL jalv -x -n enc -p "$URI" <"$tmp/ctl" >"$tmp/jalv.log" 2>&1 &
pids="$pids $!"
wait_for 10 sh -c 'jack_lsp | grep -qx enc:out_l'
say() { echo "$*" >"$tmp/ctl"; }
say "presets" # jalv loads the preset list first
sleep 0.3
say "preset $URI/presets#country-alan-jackson"
sleep 0.3
say "controls"
sleep 0.3
if ! grep -q "^artist = 1.0" "$tmp/jalv.log" || ! grep -q "^genre = 1.0" "$tmp/jalv.log"; then
    echo "FAIL: the preset did not set the artist/genre menus"
    cat "$tmp/jalv.log"
    exit 1
fi
say "seconds = 1"
say "candidates = 1"
say "mix = 1"
"$TESTS/jackio" -n jio -s 8 -g "$tmp/go" -o "$tmp/out.wav" -p enc:in_l -p enc:in_r \
    -r enc:out_l >"$tmp/jackio.log" 2>&1 &
jio=$!
pids="$pids $jio"
wait_for 10 grep -q "pass1 rolling" "$tmp/jackio.log"
sleep 1.9
say "record = 1"
sleep 4.0
say "record = 0"
sleep 0.6
say "continue = 1"
sleep 0.2
say "continue = 0"
wait_for 300 grep -q "take [0-9]* done" "$tmp/jalv.log"
wait_for 20 grep -q "pass1 done" "$tmp/jackio.log"
touch "$tmp/go"
wait $jio || { echo "FAIL: jackio"; cat "$tmp/jackio.log"; exit 1; }
grep -E "state =|error|encore" "$tmp/jalv.log" | head -20
"$TESTS/wavcheck" "$tmp/out.wav" 288000 288256 || { cat "$tmp/jalv.log"; exit 1; }
echo "jalv test: $(echo "$(date +%s.%N) - $t_start" | bc) s"
exit 0
