// Affine coupling layer (Dinh et al. 2016, Real NVP), the elementwise part, in CUDA C; the
// formulas of tinygen/functional/coupling.py and kernels/cpu/coupling.py. Arrays are (N, D)
// C-contiguous (N samples of D elements), the mask b is (D,) and holds 0 or 1:
//
//     y      = b x + (1 - b) (x exp(s) + t)           forward (a select, not a product, so that
//     logdet = sum_j (1 - b_j) s_j                      y = x exactly where b = 1 even if exp(s)
//     x      = b y + (1 - b) (y - t) exp(-s)            overflows there)      inverse
//
// backward of the forward, from g = dL/dy:   b = 1: gx = g, gs = 0, gt = 0
//                                            b = 0: gx = g e, gs = g e x, gt = g   (e = exp(s))
// and of the log-det, from gl = dL/dlogdet (N,):  gs[i, j] = gl[i] (1 - b[j]).
//
// coupling_forward is one block per sample: each thread transforms a strided slice of the row
// and sums its share of the log-det, then the block adds the shares (warp shuffles, then one
// value per warp through shared memory), in double. Launch it with a block size that is a
// multiple of 32 (the full-warp shuffle masks need whole warps). Everything else is one thread
// per element with grid-stride loops. Kernel rules: see README.md in this folder.

__device__ double warp_sum(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// The sum of v over the block, returned to thread 0 (blockDim.x a multiple of 32, <= 1024).
__device__ double block_sum(double v) {
    __shared__ double warp_totals[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    v = (int)threadIdx.x < (int)(blockDim.x / 32) ? warp_totals[threadIdx.x] : 0.0;
    if (warp == 0) v = warp_sum(v);
    return v;
}

template <typename T>
__device__ void forward_body(const T* x, const T* s, const T* t, const T* b, T* y, T* logdet,
                             T* exp_s, int d) {
    const long long row = (long long)blockIdx.x * d;
    double acc = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const T xv = x[row + j], sv = s[row + j];
        const T e = exp(sv);
        exp_s[row + j] = e;
        y[row + j] = b[j] != T(0) ? xv : xv * e + t[row + j];
        acc += b[j] != T(0) ? 0.0 : (double)sv;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) logdet[blockIdx.x] = (T)acc;
}

template <typename T>
__device__ void backward_body(const T* g, const T* x, const T* e, const T* b, T* gx, T* gs, T* gt,
                              int n, int d) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const bool kept = b[i % d] != T(0);
        const T ge = g[i] * e[i];
        gx[i] = kept ? g[i] : ge;
        gs[i] = kept ? T(0) : ge * x[i];
        gt[i] = kept ? T(0) : g[i];
    }
}

template <typename T>
__device__ void logdet_backward_body(const T* gl, const T* b, T* gs, int n, int d) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        gs[i] = gl[i / d] * (T(1) - b[i % d]);
}

template <typename T>
__device__ void inverse_body(const T* y, const T* s, const T* t, const T* b, T* x, int n, int d) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        x[i] = b[i % d] != T(0) ? y[i] : (y[i] - t[i]) * exp(-s[i]);
}

#define TG_STAMP(T, SUFFIX)                                                                     \
    extern "C" __global__ void coupling_forward_##SUFFIX(const T* x, const T* s, const T* t,    \
                                                         const T* b, T* y, T* logdet, T* exp_s, \
                                                         int d) {                               \
        forward_body<T>(x, s, t, b, y, logdet, exp_s, d);                                       \
    }                                                                                           \
    extern "C" __global__ void coupling_backward_##SUFFIX(const T* g, const T* x, const T* e,   \
                                                          const T* b, T* gx, T* gs, T* gt,      \
                                                          int n, int d) {                       \
        backward_body<T>(g, x, e, b, gx, gs, gt, n, d);                                         \
    }                                                                                           \
    extern "C" __global__ void coupling_logdet_backward_##SUFFIX(const T* gl, const T* b, T* gs, \
                                                                 int n, int d) {                \
        logdet_backward_body<T>(gl, b, gs, n, d);                                               \
    }                                                                                           \
    extern "C" __global__ void coupling_inverse_##SUFFIX(const T* y, const T* s, const T* t,    \
                                                         const T* b, T* x, int n, int d) {      \
        inverse_body<T>(y, s, t, b, x, n, d);                                                   \
    }
TG_STAMP(float, f32)
TG_STAMP(double, f64)
