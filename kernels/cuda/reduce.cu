// Reductions over one axis (CUDA C): sum, max, logsumexp, and softmax / log-softmax.
//
// The array is seen as (outer, n, inner), C-contiguous: the axis being reduced has n elements at
// stride `inner`; the output is (outer, inner) (softmax: the input's shape). Two rungs of a
// kernel ladder, as in llm.c's dev/cuda:
//
//   reduce_sum_naive   one thread per output, a serial loop over the axis: simple, but a warp's
//                      32 threads read 32 far-apart rows when inner == 1 (uncoalesced), and only
//                      outer*inner threads run (a (64, 100000) array gives 64 threads);
//   reduce_* / softmax one block per output: the block's threads read the axis in a strided loop
//                      (neighbouring threads read neighbouring elements when inner == 1), keep a
//                      partial each, then reduce the partials in registers with warp shuffles
//                      (__shfl_down_sync, 5 steps for 32 lanes) and across warps through one
//                      shared-memory slot per warp, and a last warp shuffle.
//
// logsumexp is max + log(sum exp(x - max)) (two block reductions; an all -inf row gives -inf,
// a +inf entry gives +inf); softmax = exp(x - max) / sum, log_softmax = x - max - log(sum).
// max propagates NaN (as NumPy). Launch the block kernels with a block size that is a multiple
// of 32 and at most 1024 (the full-warp masks need whole warps). Kernel rules: see README.md.

struct SumOp {
    template <typename T> __device__ static T identity() { return T(0); }
    template <typename T> __device__ static T apply(T a, T b) { return a + b; }
};
struct MaxOp {
    template <typename T> __device__ static T identity() {      // -infinity
        return (T)(-__longlong_as_double(0x7ff0000000000000LL));
    }
    template <typename T> __device__ static T apply(T a, T b) { return (a > b || a != a) ? a : b; }
};

template <typename Op, typename T>
__device__ T warp_reduce(T v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = Op::apply(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

// Op over the block's values v, returned to EVERY thread. Starts with a barrier, so that it can
// be called again in the same kernel (the previous call's readers are done with the slots).
template <typename Op, typename T>
__device__ T block_reduce(T v) {
    __shared__ T warp_totals[32];
    __shared__ T total;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    v = warp_reduce<Op>(v);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? warp_totals[lane] : Op::template identity<T>();
        v = warp_reduce<Op>(v);
        if (lane == 0) total = v;
    }
    __syncthreads();
    return total;
}

// Position of element k of output o's axis.
__device__ long long at(int o, int k, int n, int inner) {
    return ((long long)(o / inner) * n + k) * inner + o % inner;
}

template <typename Op, typename T>
__device__ T axis_reduce(const T* x, int o, int n, int inner) {
    T acc = Op::template identity<T>();
    for (int k = threadIdx.x; k < n; k += blockDim.x) acc = Op::apply(acc, x[at(o, k, n, inner)]);
    return block_reduce<Op>(acc);
}

template <typename T>
__device__ void sum_naive_body(const T* x, T* out, int outputs, int n, int inner) {
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < outputs; o += blockDim.x * gridDim.x) {
        T acc = T(0);
        for (int k = 0; k < n; ++k) acc += x[at(o, k, n, inner)];
        out[o] = acc;
    }
}

template <typename T>
__device__ void sum_body(const T* x, T* out, int n, int inner) {
    const T total = axis_reduce<SumOp>(x, blockIdx.x, n, inner);
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}

template <typename T>
__device__ void max_body(const T* x, T* out, int n, int inner) {
    const T m = axis_reduce<MaxOp>(x, blockIdx.x, n, inner);
    if (threadIdx.x == 0) out[blockIdx.x] = m;
}

// max and sum exp(x - max) of output o's axis (m is replaced by 0 when infinite, so that an
// all -inf row or a +inf entry gives a finite shift).
template <typename T>
__device__ void max_and_sumexp(const T* x, int o, int n, int inner, T* m_out, T* shift_out,
                               T* sum_out) {
    const T m = axis_reduce<MaxOp>(x, o, n, inner);
    const T shift = isinf(m) ? T(0) : m;
    T acc = T(0);
    for (int k = threadIdx.x; k < n; k += blockDim.x) acc += exp(x[at(o, k, n, inner)] - shift);
    *sum_out = block_reduce<SumOp>(acc);
    *m_out = m;
    *shift_out = shift;
}

template <typename T>
__device__ void logsumexp_body(const T* x, T* out, int n, int inner) {
    T m, shift, sum;
    max_and_sumexp(x, blockIdx.x, n, inner, &m, &shift, &sum);
    if (threadIdx.x == 0) out[blockIdx.x] = shift + log(sum);
}

template <typename T>
__device__ void softmax_body(const T* x, T* out, int n, int inner, int log_space) {
    T m, shift, sum;
    max_and_sumexp(x, blockIdx.x, n, inner, &m, &shift, &sum);
    const T log_sum = log(sum);
    for (int k = threadIdx.x; k < n; k += blockDim.x) {
        const long long i = at(blockIdx.x, k, n, inner);
        out[i] = log_space ? x[i] - shift - log_sum : exp(x[i] - shift) / sum;
    }
}

#define TG_STAMP(T, SUFFIX)                                                                     \
    extern "C" __global__ void reduce_sum_naive_##SUFFIX(const T* x, T* out, int outputs, int n, \
                                                         int inner) {                           \
        sum_naive_body<T>(x, out, outputs, n, inner);                                           \
    }                                                                                           \
    extern "C" __global__ void reduce_sum_##SUFFIX(const T* x, T* out, int n, int inner) {       \
        sum_body<T>(x, out, n, inner);                                                          \
    }                                                                                           \
    extern "C" __global__ void reduce_max_##SUFFIX(const T* x, T* out, int n, int inner) {       \
        max_body<T>(x, out, n, inner);                                                          \
    }                                                                                           \
    extern "C" __global__ void logsumexp_##SUFFIX(const T* x, T* out, int n, int inner) {        \
        logsumexp_body<T>(x, out, n, inner);                                                    \
    }                                                                                           \
    extern "C" __global__ void softmax_##SUFFIX(const T* x, T* out, int n, int inner) {          \
        softmax_body<T>(x, out, n, inner, 0);                                                   \
    }                                                                                           \
    extern "C" __global__ void log_softmax_##SUFFIX(const T* x, T* out, int n, int inner) {      \
        softmax_body<T>(x, out, n, inner, 1);                                                   \
    }
TG_STAMP(float, f32)
TG_STAMP(double, f64)
