// Binary cross-entropy with logits (CUDA C), elementwise, the formulas of
// tinygen/functional/loss.py and kernels/cpu/losses.py:
//
//     with l = log1p(exp(-|x|)):   loss = l + t max(-x, 0) + (1 - t) max(x, 0)
//                                   dloss/dx = (1 - t) sigmoid(x) - t sigmoid(-x)
//
// Nothing cancels: every loss term is >= 0, and both sigmoids come from e = exp(-|x|) <= 1
// (x = 50, t = 1 gives -sigmoid(-50), not 0). Kernel rules: see README.md in this folder.
// 1-D launches, grid-stride loops (any grid and block size gives the same result).

template <typename T>
__device__ void bce_forward_body(const T* x, const T* t, T* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const T xi = x[i], ti = t[i];
        const T l = log1p(exp(-fabs(xi)));
        const T pos = xi > T(0) ? xi : T(0);            // max(x, 0)
        const T neg = pos - xi;                         // max(-x, 0)
        out[i] = l + ti * neg + (T(1) - ti) * pos;
    }
}

template <typename T>
__device__ void bce_grad_body(const T* x, const T* t, const T* g, T* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const T xi = x[i], ti = t[i];
        const T e = exp(-fabs(xi));
        const T big = T(1) / (T(1) + e);                // sigmoid(|x|)
        const T small = e * big;                        // sigmoid(-|x|)
        const T s_pos = xi >= T(0) ? big : small;       // sigmoid(x)
        const T s_neg = xi >= T(0) ? small : big;       // sigmoid(-x)
        out[i] = g[i] * ((T(1) - ti) * s_pos - ti * s_neg);
    }
}

#define TG_STAMP(T, SUFFIX)                                                                     \
    extern "C" __global__ void bce_with_logits_forward_##SUFFIX(const T* x, const T* t, T* out, \
                                                                int n) {                        \
        bce_forward_body<T>(x, t, out, n);                                                      \
    }                                                                                           \
    extern "C" __global__ void bce_with_logits_grad_##SUFFIX(const T* x, const T* t,            \
                                                             const T* g, T* out, int n) {       \
        bce_grad_body<T>(x, t, g, out, n);                                                      \
    }
TG_STAMP(float, f32)
TG_STAMP(double, f64)
