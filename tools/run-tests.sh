#!/bin/sh
# Builds and runs the whole test suite twice: a Release build with gcc, and an ASan+UBSan
# build with clang (which also builds the libFuzzer targets and replays their corpora).
# Tests that need ../shared skip with a message where it is absent.
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

CC=clang-14 cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DENCORE_SANITIZE="address;undefined" -DENCORE_FUZZ=ON -DENCORE_BUILD_BENCH=OFF
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE lint
