#!/bin/sh
# run_lv2host_fake.sh LV2HOST FAKE_ENCORED LV2_DIR SCENARIO: the plugin in our lilv test host
# against the scripted fake daemon, at 44.1, 48 and 96 kHz (a temp socket per run).
set -u
host=$1 fake=$2 lv2=$3 scenario=$4
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for rate in 44100 48000 96000; do
    sock=$tmp/encored-$rate.sock
    args=""
    case $scenario in
    die) args="--die-after 3" ;;
    freewheel) args="--delay-ms 30" ;;
    esac
    if [ "$scenario" = retry ]; then
        # the daemon is started by the host after the first (failing) attempt
        "$host" --lv2 "$lv2" --socket "$sock" --rate $rate --scenario retry --fake \
            --daemon-cmd "$fake $sock --once >/dev/null & sleep 0.3" || exit 1
        continue
    fi
    "$fake" "$sock" $args >"$tmp/fake.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i + 1)); done
    mkdir -p "$tmp/state-$rate"
    "$host" --lv2 "$lv2" --socket "$sock" --rate $rate --scenario "$scenario" --fake \
        --state-dir "$tmp/state-$rate" || exit 1
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
    pid=""
done
exit 0
