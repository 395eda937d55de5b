/*
 * backend/cuda/cuda_conv.cu - conv1d as col = im2col(x) [Cin·k, Tout], y = W [Cout, Cin·k] · col;
 * conv_transpose1d as col = Wᵀ [Cout·k, Cin] · x, then a gather col2im (each output sums its
 * taps in a fixed order: deterministic, no atomics). fp32 throughout, as the reference VQ-VAE.
 */
#include "backend/cuda/cuda_conv.cuh"
#include "backend/cuda/cuda_impl.cuh"

static int64_t conv_out_len(int64_t T, int k, int s, int p, int d)
{
    return (T + 2 * (int64_t)p - (int64_t)d * (k - 1) - 1) / s + 1;
}

__global__ void im2col_kernel(const float *__restrict__ x,
                              int64_t Cin,
                              int64_t T,
                              int k,
                              int s,
                              int p,
                              int d,
                              int64_t Tout,
                              float *__restrict__ col)
{
    const int64_t total = Cin * k * Tout;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i % Tout, row = i / Tout, j = row % k, c = row / k;
        const int64_t src = t * s - p + (int64_t)d * j;
        col[i]            = src >= 0 && src < T ? x[c * T + src] : 0.0f;
    }
}

__global__ void bias_rows_kernel(int64_t C, int64_t T, const float *b, float *y)
{
    const int64_t total = C * T;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = b ? b[i / T] : 0.0f;
}

/* y[o, to] = b[o] + Σ_j col[o·k + j, t] over taps with to + p − j = t·s, 0 <= t < T. */
__global__ void col2im_kernel(const float *__restrict__ col,
                              int64_t Cout,
                              int64_t T,
                              int k,
                              int s,
                              int p,
                              int64_t Tout,
                              const float *__restrict__ b,
                              float *__restrict__ y)
{
    const int64_t total = Cout * Tout;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t to = i % Tout, o = i / Tout;
        float acc = 0.0f;
        for (int j = 0; j < k; j++) {
            const int64_t u = to + p - j;
            if (u < 0 || u % s) continue;
            const int64_t t = u / s;
            if (t < T) acc += col[(o * k + j) * T + t];
        }
        y[i] = (b ? b[o] : 0.0f) + acc;
    }
}

extern "C" size_t jb_cuda_conv1d_arena(int64_t Cin, int64_t T, int k, int stride, int pad, int dil)
{
    const int64_t Tout = conv_out_len(T, k, stride, pad, dil);
    return Tout > 0 ? (size_t)(Cin * k * Tout) * sizeof(float) : 0;
}

extern "C" size_t jb_cuda_conv_transpose1d_arena(int64_t Cout, int64_t T, int k)
{
    return (size_t)(Cout * k * T) * sizeof(float);
}

extern "C" enum jb_status jb_cuda_conv1d(struct jb_cuda *cu,
                                         const float *x,
                                         int64_t Cin,
                                         int64_t T,
                                         const float *w,
                                         int64_t Cout,
                                         int k,
                                         const float *b,
                                         int stride,
                                         int pad,
                                         int dil,
                                         float *y)
{
    const int64_t Tout = conv_out_len(T, k, stride, pad, dil);
    if (Tout <= 0 || Cout <= 0) return JB_STATUS_OK;
    const int64_t Kc = Cin * k;
    const float *col = x;
    if (!(k == 1 && stride == 1 && pad == 0)) { /* a 1x1 conv reads x as it is */
        void *buf;
        enum jb_status st = jb_cuda_arena(cu, (size_t)(Kc * Tout) * sizeof(float), &buf);
        if (st != JB_STATUS_OK) return st;
        im2col_kernel<<<jb_cuda_blocks(Kc * Tout, 256), 256, 0, cu->stream>>>(
          x, Cin, T, k, stride, pad, dil, Tout, (float *)buf);
        CUDA_CHECK_LAUNCH();
        col = (const float *)buf;
    }
    bias_rows_kernel<<<jb_cuda_blocks(Cout * Tout, 256), 256, 0, cu->stream>>>(Cout, Tout, b, y);
    CUDA_CHECK_LAUNCH();
    /* column-major: y^T (Tout x Cout) = col^T (Tout x Kc) · W^T (Kc x Cout), β = 1 over the bias */
    const float one = 1.0f;
    CUBLAS_CHECK(jb_cublas.sgemm(cu->blas,
                                 CUBLAS_OP_N,
                                 CUBLAS_OP_N,
                                 (int)Tout,
                                 (int)Cout,
                                 (int)Kc,
                                 &one,
                                 col,
                                 (int)Tout,
                                 w,
                                 (int)Kc,
                                 &one,
                                 y,
                                 (int)Tout));
    return JB_STATUS_OK;
}

extern "C" enum jb_status jb_cuda_conv_transpose1d(struct jb_cuda *cu,
                                                   const float *x,
                                                   int64_t Cin,
                                                   int64_t T,
                                                   const float *w,
                                                   int64_t Cout,
                                                   int k,
                                                   const float *b,
                                                   int stride,
                                                   int pad,
                                                   float *y)
{
    const int64_t Tout = (T - 1) * stride - 2 * (int64_t)pad + k;
    if (Tout <= 0 || T <= 0) return JB_STATUS_OK;
    const int64_t R = Cout * k;
    void *buf;
    enum jb_status st = jb_cuda_arena(cu, (size_t)(R * T) * sizeof(float), &buf);
    if (st != JB_STATUS_OK) return st;
    /* col [R, T] row-major = W^T (R x Cin) · x (Cin x T); column-major: col^T (T x R) =
     * x^T (T x Cin) · W (Cin x R) with W row-major [Cin][R] = column-major R x Cin, op T. */
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(jb_cublas.sgemm(cu->blas,
                                 CUBLAS_OP_N,
                                 CUBLAS_OP_T,
                                 (int)T,
                                 (int)R,
                                 (int)Cin,
                                 &one,
                                 x,
                                 (int)T,
                                 w,
                                 (int)R,
                                 &zero,
                                 (float *)buf,
                                 (int)T));
    col2im_kernel<<<jb_cuda_blocks(Cout * Tout, 256), 256, 0, cu->stream>>>(
      (const float *)buf, Cout, T, k, stride, pad, Tout, b, y);
    CUDA_CHECK_LAUNCH();
    return JB_STATUS_OK;
}
