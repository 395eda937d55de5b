/*
 * tests/gpu/test_cuda_parity.c - the reference parity fixture set on the CUDA backend: runs
 * `encore-parity --backend cuda --skip-if-missing FIXTURES` where a CUDA device exists, exits 77
 * (skipped, saying why) where none does, so the gpu label never fails for lack of hardware.
 * Usage: test_cuda_parity ENCORE_PARITY FIXTURES
 */
#include "backend/cuda/cuda.h"

#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *why = NULL;
    if (jb_cuda_device_count(&why) == 0) {
        printf("SKIP test_cuda_parity: no CUDA device (%s); nothing was run on a GPU\n", why);
        return 77;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: test_cuda_parity ENCORE_PARITY FIXTURES\n");
        return 2;
    }
    char *const args[] = { argv[1], "--backend", "cuda", "--skip-if-missing", argv[2], NULL };
    fflush(stdout);
    execv(argv[1], args);
    perror("test_cuda_parity: exec encore-parity");
    return 1;
}
