#!/bin/sh
# encore-jack under a dummy jackd (48 kHz, period 256) with a real encored: our jackio client
# is the timebase master (120 BPM 4/4) and plays a sine into encore-jack; the record command is
# given about 2 s and 6 s into the transport (snapped to the bar lines at 2 s and 6 s), then
# continue (1 s); after the job, the transport is played again from 0 and encore-jack's output
# recorded: the continuation must start at frame 288000 (6 s), plus at most one period of JACK
# loop latency. The takes are saved with the 'save' command.
set -u
BIN=$1 TESTS=$2 MODELS=$3
. "$(dirname "$0")/jack_common.sh"
t_start=$(date +%s.%N)
start_jackd 48000 256
start_encored
mkfifo "$tmp/ctl"
sleep 3600 >"$tmp/ctl" &
pids="$pids $!"
"$BIN/encore-jack" -n encore -s "$tmp/encored.sock" -t 1 -x 1 -d "$tmp/takes" -a "Alan Jackson" \
    -g Country <"$tmp/ctl" >"$tmp/encore-jack.log" 2>&1 &
pids="$pids $!"
wait_for 10 grep -q ready "$tmp/encore-jack.log"
"$TESTS/jackio" -n jio -s 8 -g "$tmp/go" -o "$tmp/out.wav" -p encore:in_l -p encore:in_r \
    -r encore:out_l >"$tmp/jackio.log" 2>&1 &
jio=$!
pids="$pids $jio"
wait_for 10 grep -q "pass1 rolling" "$tmp/jackio.log"
sleep 1.9
echo record >"$tmp/ctl"
sleep 4.0
echo record >"$tmp/ctl"
sleep 0.6
echo continue >"$tmp/ctl"
wait_for 300 grep -q "state: done" "$tmp/encore-jack.log"
wait_for 20 grep -q "pass1 done" "$tmp/jackio.log"
touch "$tmp/go"
wait $jio || { echo "FAIL: jackio"; cat "$tmp/jackio.log"; exit 1; }
cat "$tmp/encore-jack.log" "$tmp/jackio.log"
"$TESTS/wavcheck" "$tmp/out.wav" 288000 288256 || exit 1
echo save >"$tmp/ctl"
wait_for 10 sh -c "ls '$tmp/takes' | grep -q take-1.wav"
ls "$tmp/takes"
echo "encore-jack test: $(echo "$(date +%s.%N) - $t_start" | bc) s"
exit 0
