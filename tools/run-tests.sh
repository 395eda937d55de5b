#!/bin/sh
# Builds and runs the whole test suite twice: a Release build with gcc, and an ASan+UBSan
# build with clang (which also builds the libFuzzer targets and replays their corpora).
# Tests that need ../shared skip with a message where it is absent. ENCORE_TEST_HOOKS builds the
# test-only hooks (an injected device failure in encored) that some tests need; a release
# build leaves it OFF.
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DENCORE_TEST_HOOKS=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

CC=clang-14 cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DENCORE_SANITIZE="address;undefined" -DENCORE_FUZZ=ON -DENCORE_BUILD_BENCH=OFF \
    -DENCORE_TEST_HOOKS=ON
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE lint
