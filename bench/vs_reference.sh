#!/bin/sh
# bench/vs_reference.sh - runs the reference (../shared/tools/refbench) and bench_prior back to
# back, interleaved A B A B, so that the ratios printed by bench_prior ("x ref") compare runs
# made under the same machine load. Each bench_prior run reads the JSON of the reference run just
# before it.
#
# usage: bench/vs_reference.sh [SHAPE] [ROUNDS]   (from the repository root, after building)
#   SHAPE   w256d8 (default), w1024d24 or w1920d72; or cond: the upsampler conditioner per window
#           (the reference's w1920d72 conditioning time, then bench_prior --cond-only)
#   ROUNDS  A B pairs (default 2)
# Needs python3-torch and an unpacked openai/jukebox in JUKEBOX_REF (default /work/jukebox-ref).
set -eu
shape=${1:-w256d8}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
refbench=${REFBENCH:-$root/../shared/tools/refbench/bench_baseline.py}
bench=${BENCH_PRIOR:-$root/build/bin/bench_prior}
out=${OUT:-${TMPDIR:-/tmp}/encore-vs-ref}
mkdir -p "$out"
only=""
case $shape in
w256d8) tokens=256 ;;
w1024d24) tokens=64 ;;
cond) shape=w1920d72 tokens=1 only=--cond-only ;;
*) tokens=16 ;;
esac
i=1
while [ "$i" -le "$rounds" ]; do
    echo "== round $i: reference ($shape, $tokens tokens), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    JUKEBOX_REF=${JUKEBOX_REF:-/work/jukebox-ref} OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 \
        /usr/bin/python3 "$refbench" prior "$shape" --tokens "$tokens" --simple-tokens 0 \
        --json "$out/ref-$shape-$i.json" > "$out/ref-$shape-$i.log" 2>&1 ||
        { echo "reference failed: see $out/ref-$shape-$i.log"; exit 1; }
    echo "== round $i: bench_prior, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bench" --shape "$shape" $only --ref "$out/ref-$shape-$i.json"
    i=$((i + 1))
done
