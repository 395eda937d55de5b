#!/bin/bash
# The GPU checks of docs/cuda.md as one script, for a machine with a CUDA device: the op test
# over every backend, the gpu-labelled tests, a continuation through encored on the GPU (with
# `encore status` showing its device memory), the same continuation on cpu and cuda timed side
# by side and on cuda with --offload (same audio), an injected device failure retried by a
# second encored worker on the GPU, and bench_gpu. Each step has a time limit; a summary lists
# pass / skip (77) / fail.
#
# usage: tools/gpu-check.sh [BUILD_DIR [FIXTURE_DIR [LOG_DIR]]]
#   defaults: build, ../shared/fixtures/jukebox-ref, a temporary folder
# Exit status: 0 when no step failed.
set -u
build=${1:-build}
fixtures=${2:-../shared/fixtures/jukebox-ref}
logs=${3:-$(mktemp -d)}
bin=$build/bin
tests=$build/tests
model=$build/models/default
mkdir -p "$logs"
summary=()
failed=0

step() { # step NAME SECONDS COMMAND...: run, log, record the outcome
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    local t0=$SECONDS rc
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    rc=$?
    tail -n 40 "$logs/$name.log"
    local outcome=pass
    if [ $rc -eq 77 ]; then
        outcome=skip
    elif [ $rc -ne 0 ]; then
        outcome="FAIL (exit $rc)"
        failed=1
    fi
    summary+=("$(printf '%-26s %-14s %4ds' "$name" "$outcome" $((SECONDS - t0)))")
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true

step backend_ops 180 "$tests/test_backend_ops"
step cuda_kernels 180 "$tests/test_cuda_kernels"
step cuda_graph 90 "$tests/test_cuda_graph"
step cuda_decode_graph 180 "$tests/test_prior_cache" --decode-graph cuda:0
step cuda_oom 90 "$tests/test_cuda_oom"
step cuda_continuation 180 "$tests/test_cuda_continuation" "$model"
if [ -d "$fixtures" ]; then
    step cuda_parity 300 "$tests/test_cuda_parity" "$bin/encore-parity" "$fixtures"
else
    echo "=== cuda_parity: skipped, no fixture folder at $fixtures"
    summary+=("$(printf '%-26s %-14s' cuda_parity "skip (no fixtures)")")
fi

# One continuation of the bundled riff on each device, same seed, timed side by side.
riff=$model/riff.wav
step continue_cpu 180 "$bin/encore" continue "$riff" --seconds 4 --seed 7 --device cpu \
    --save-take "$logs/take-cpu.gguf" -o "$logs/cont-cpu.wav"
step continue_cuda 180 "$bin/encore" continue "$riff" --seconds 4 --seed 7 --device cuda \
    --save-take "$logs/take-cuda.gguf" -o "$logs/cont-cuda.wav"
# The same job with only the sampled level's prior on the device (weights leave and come back
# between levels): the audio must be byte for byte the same.
step continue_cuda_offload 180 "$bin/encore" continue "$riff" --seconds 4 --seed 7 \
    --device cuda --offload -o "$logs/cont-cuda-offload.wav"
step offload_same_audio 10 cmp "$logs/cont-cuda.wav" "$logs/cont-cuda-offload.wav"

# encored on the GPU: status (device memory per model and candidate), then a job through it.
run=$(mktemp -d)
"$bin/encored" --device cuda --socket "$run/s" --state "$run/state" --models default="$model" \
    >"$logs/encored.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do # up to 30 s: the daemon loads the models before it listens
    [ -S "$run/s" ] || ! kill -0 $daemon 2>/dev/null && break
    sleep 0.1
done
step daemon_status 30 "$bin/encore" status --socket "$run/s"
step daemon_continue 180 "$bin/encore" continue "$riff" --seconds 4 --seed 7 --daemon \
    --socket "$run/s" -o "$logs/cont-daemon.wav"
step daemon_status_after 30 "$bin/encore" status --socket "$run/s"
kill -TERM $daemon 2>/dev/null
wait $daemon
echo "encored exited with $? after SIGTERM"
tail -n 20 "$logs/encored.log"

# Two encored workers on this GPU; the first attempt of the job fails as a device failure would
# (a hook of builds with -DENCORE_TEST_HOOKS=ON): an error event, the retry on the other worker,
# the daemon still serving.
if [ -x "$tests/test_daemon" ]; then
    step daemon_device_retry 300 env TEST_DAEMON_ONLY=test_device_retry \
        TEST_DAEMON_DEVICES=cuda:0,cuda:0 "$tests/test_daemon" "$bin/encored" "$model"
fi

step bench_gpu 300 "$bin/bench_gpu"

echo "=== summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit $failed
