#!/bin/sh
# run_lv2host_real.sh LV2HOST ENCORED LV2_DIR MODEL_DIR SCENARIO: encore.lv2 in our lilv test
# host against a real encored (bundled default model, temp socket and state folder).
#   continue: at 44.1, 48 and 96 kHz the continuation starts exactly at the riff's end frame;
#             saved state restores and plays identically without the daemon.
#   die:      encored is killed (SIGKILL) while the job runs: the plugin reports the error
#             and keeps passing audio; the host keeps running.
set -u
host=$1 encored=$2 lv2=$3 models=$4 scenario=$5
if [ ! -f "$models/prior_level_2.gguf" ]; then
    echo "SKIP: no default model in $models (build target default_model)"
    exit 77
fi
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
start_daemon() {
    rm -f "$tmp/s.sock"
    "$encored" --socket "$tmp/s.sock" --state "$tmp/state" \
        --models "default=$models" --threads 2 -v >>"$tmp/encored.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$tmp/s.sock" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i + 1)); done
    [ -S "$tmp/s.sock" ] || { echo "FAIL: encored did not start"; cat "$tmp/encored.log"; exit 1; }
}
rates="44100 48000 96000"
[ "$scenario" = die ] && rates=48000
for rate in $rates; do
    start_daemon
    t0=$(date +%s.%N)
    mkdir -p "$tmp/state-$rate"
    if [ "$scenario" = die ]; then
        set -- --scenario die --seconds 4 --kill-pid $pid
    else
        set -- --scenario continue --seconds 1 --state-dir "$tmp/state-$rate"
    fi
    "$host" --lv2 "$lv2" --socket "$tmp/s.sock" --rate $rate --candidates 1 --timeout 300 "$@" \
        >"$tmp/host.log" 2>&1
    rc=$?
    grep -v '^\[plugin\]' "$tmp/host.log"
    if [ $rc -ne 0 ]; then
        echo "FAIL (rc $rc); encored log:"
        tail -20 "$tmp/encored.log"
        exit 1
    fi
    echo "rate $rate: $(echo "$(date +%s.%N) - $t0" | bc) s"
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
    pid=""
done
exit 0
