# Shared by the JACK host tests (sourced): a dummy jackd under a unique server name, a real
# encored on a temp socket, cleanup in a trap, helpers to wait for log lines.
# Needs: BIN (build/bin), TESTS (build/tests), MODELS (default model dir) set by the caller.
for tool in jackd jack_lsp; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "SKIP: $tool not installed (package jackd2)"
        exit 77
    fi
done
if [ ! -f "$MODELS/prior_level_2.gguf" ]; then
    echo "SKIP: no default model in $MODELS"
    exit 77
fi
tmp=$(mktemp -d)
pids=""
cleanup() {
    # clients first, then jackd with SIGTERM and a wait: a jackd killed with SIGKILL leaves
    # its entry in JACK's shared-memory registry (a few slots), and later servers hang
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do # let clients leave JACK cleanly (a SIGKILLed one can leave locks)
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done
    done
    if [ -n "${jackd_pid:-}" ]; then
        kill "$jackd_pid" 2>/dev/null
        i=0
        while kill -0 "$jackd_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
        kill -9 "$jackd_pid" 2>/dev/null
    fi
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
export JACK_DEFAULT_SERVER="encore$$x$(date +%N)"
export JACK_NO_AUDIO_RESERVATION=1
start_jackd() { # RATE PERIOD
    jackd -r -n "$JACK_DEFAULT_SERVER" -d dummy -r "$1" -p "$2" >"$tmp/jackd.log" 2>&1 &
    jackd_pid=$!
    # if this times out with no jackd error: a stale lock in /dev/shm/jack_db-0 (JACK's
    # metadata database, left by a killed client) makes every new jackd hang at start; with
    # no JACK process running, remove /dev/shm/jack_db-0 and /dev/shm/jack-shm-registry
    wait_for 30 sh -c "jack_lsp >/dev/null 2>&1"
}
start_encored() {
    "$BIN/encored" --socket "$tmp/encored.sock" --state "$tmp/state" \
        --models "default=$MODELS" --threads 2 -v >"$tmp/encored.log" 2>&1 &
    encored_pid=$!
    pids="$pids $encored_pid"
    wait_for 10 test -S "$tmp/encored.sock"
}
wait_for() { # SECONDS CMD...: polls CMD every 20 ms
    t=$1
    shift
    i=0
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt $((t * 50)) ]; then
            echo "FAIL: timed out after ${t}s waiting for: $*"
            for f in "$tmp"/*.log; do echo "--- $f"; tail -15 "$f"; done
            exit 1
        fi
        sleep 0.02
    done
}
