/*
 * tests/gpu/test_cuda_oom.c - running out of device memory fails cleanly and loses nothing:
 * a job larger than the device is refused up front by the memory plan (ERR_NOMEM with the
 * sizes in the message), an impossible allocation or arena fails with ERR_NOMEM instead of
 * aborting, an op that needs more work memory than was reserved fails instead of allocating,
 * and the device keeps working afterwards. Exits 77 without a CUDA device.
 */
#include "backend/cuda/cuda_gemm.cuh"
#include "gpu_util.h"

int main(void)
{
    struct jb_cuda *cu = gpu_open_or_skip("test_cuda_oom");
    size_t fr = 0, tot = 0;
    CHECK(jb_cuda_mem_info(cu, &fr, &tot) == JB_STATUS_OK && tot > 0, "mem info");

    /* the plan: 5b-sized model + 10^4 candidates of 1 GiB never fit */
    enum jb_status st = jb_cuda_check_fit(cu, "test job", (size_t)10 << 30, (size_t)1 << 30, 10000);
    CHECK(st == JB_STATUS_ERR_NOMEM, "oversized job accepted (status %d)", st);
    CHECK(strstr(jb_last_error(), "does not fit") && strstr(jb_last_error(), "candidates"),
          "unclear refusal: %s",
          jb_last_error());
    printf("refused: %s\n", jb_last_error());
    CHECK(jb_cuda_check_fit(cu, "small job", 1 << 20, 1 << 20, 2) == JB_STATUS_OK,
          "a 3 MiB job refused: %s",
          jb_last_error());

    /* allocations beyond the device */
    void *p = NULL;
    st      = jb_cuda_malloc(cu, tot * 4, &p);
    CHECK(st == JB_STATUS_ERR_NOMEM && p == NULL, "4x the device allocated (status %d)", st);
    CHECK(jb_cuda_reserve(cu, tot * 4) == JB_STATUS_ERR_NOMEM, "4x the device reserved");

    /* an op needing more work memory than reserved fails, it does not allocate */
    CHECK(jb_cuda_reserve(cu, 16) == JB_STATUS_OK, "reserve 16 bytes");
    float *x = dev_copy(cu, NULL, 4 * 64 * 4), *y = dev_copy(cu, NULL, 4 * 64 * 4);
    void *w = dev_copy(cu, NULL, 64 * 64 * 2);
    CHECK(jb_cuda_memset(cu, x, 0, 4 * 64 * 4) == JB_STATUS_OK &&
            jb_cuda_memset(cu, w, 0, 64 * 64 * 2) == JB_STATUS_OK,
          "memset");
    st = jb_cuda_matmul(cu, 4, 64, 64, x, 64, w, JB_DTYPE_F16, false, NULL, y, 64, false);
    CHECK(st == JB_STATUS_ERR_NOMEM, "op ran past its reserved arena (status %d)", st);

    /* and the device still works */
    CHECK(jb_cuda_reserve(cu, jb_cuda_matmul_arena(4, 64, 64, JB_DTYPE_F16)) == JB_STATUS_OK,
          "reserve");
    CHECK(jb_cuda_matmul(cu, 4, 64, 64, x, 64, w, JB_DTYPE_F16, false, NULL, y, 64, false) ==
            JB_STATUS_OK,
          "matmul after the failures: %s",
          jb_last_error());
    float *h = host_copy(cu, y, 4 * 64 * 4);
    int nz   = 0;
    for (int i = 0; i < 4 * 64; i++)
        nz += h[i] != 0.0f;
    CHECK(nz == 0, "zero inputs gave %d non-zero outputs", nz);
    CHECK(jb_cuda_synchronize(cu) == JB_STATUS_OK, "device error: %s", jb_last_error());
    free(h);
    jb_cuda_free(cu, x), jb_cuda_free(cu, y), jb_cuda_free(cu, w);
    jb_cuda_close(cu);
    printf("%s\n", g_failures ? "FAILED" : "out-of-memory paths fail cleanly");
    return g_failures ? 1 : 0;
}
