// Optimizer updates (CUDA C), in place, one thread per parameter element (grid-stride loops);
// the formulas of tinygen/optim and kernels/cpu/optim.py:
//
// Adam / AdamW (Kingma & Ba; Loshchilov & Hutter):
//     g' = -g if maximize;  decoupled (AdamW): p *= 1 - lr wd,  else g' += wd p
//     m = beta1 m + (1 - beta1) g';   v = beta2 v + (1 - beta2) g'^2;   vmax = max(vmax, v)
//     p -= step_size m / (sqrt(v or vmax) inv_bc2_sqrt + eps)
//     with step_size = lr / (1 - beta1^t), inv_bc2_sqrt = 1 / sqrt(1 - beta2^t) (host-computed)
// The general kernel computes in double, as the CPU kernel does; adam_plain (no weight decay,
// amsgrad or maximize: the common case) computes in the parameter's type, as PyTorch does.
//
// SGD with momentum (PyTorch's convention):
//     g' = (-g if maximize) + wd p;  b = g' (first step) or momentum b + (1 - dampening) g'
//     p -= lr (g' + momentum b if nesterov else b)        (p -= lr g' without momentum)
//
// Kernel rules: see README.md in this folder.

template <typename T>
__device__ void adam_body(T* p, const T* g, T* m, T* v, T* vmax, int n, double lr, double beta1,
                          double beta2, double eps, double weight_decay, int decoupled,
                          int amsgrad, int maximize, double step_size, double inv_bc2_sqrt) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        double gi = maximize ? -(double)g[i] : (double)g[i];
        if (weight_decay != 0.0) {
            if (decoupled) p[i] = (T)(p[i] * (1.0 - lr * weight_decay));
            else gi += weight_decay * p[i];
        }
        const double mi = beta1 * m[i] + (1.0 - beta1) * gi;
        double vi = beta2 * v[i] + (1.0 - beta2) * gi * gi;
        m[i] = (T)mi;
        v[i] = (T)vi;
        if (amsgrad) {
            if (vi > vmax[i]) vmax[i] = (T)vi;
            vi = vmax[i];
        }
        p[i] = (T)(p[i] - step_size * mi / (sqrt(vi) * inv_bc2_sqrt + eps));
    }
}

template <typename T>
__device__ void adam_plain_body(T* p, const T* g, T* m, T* v, int n, T step_size, T beta1,
                                T beta2, T one_minus_beta1, T one_minus_beta2, T inv_bc2_sqrt,
                                T eps) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        const T gi = g[i];
        const T mi = beta1 * m[i] + one_minus_beta1 * gi;
        const T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrt(vi) * inv_bc2_sqrt + eps);
    }
}

template <typename T>
__device__ void sgd_body(T* p, const T* g, T* buf, int n, double lr, double momentum,
                         double dampening, double weight_decay, int nesterov, int maximize,
                         int first) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        double gi = maximize ? -(double)g[i] : (double)g[i];
        if (weight_decay != 0.0) gi += weight_decay * p[i];
        if (momentum != 0.0) {
            const double b = first ? gi : momentum * buf[i] + (1.0 - dampening) * gi;
            buf[i] = (T)b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = (T)(p[i] - lr * gi);
    }
}

#define TG_STAMP(T, SUFFIX)                                                                      \
    extern "C" __global__ void adam_update_##SUFFIX(                                             \
        T* p, const T* g, T* m, T* v, T* vmax, int n, double lr, double beta1, double beta2,     \
        double eps, double weight_decay, int decoupled, int amsgrad, int maximize,               \
        double step_size, double inv_bc2_sqrt) {                                                 \
        adam_body<T>(p, g, m, v, vmax, n, lr, beta1, beta2, eps, weight_decay, decoupled,        \
                     amsgrad, maximize, step_size, inv_bc2_sqrt);                                \
    }                                                                                            \
    extern "C" __global__ void adam_update_plain_##SUFFIX(                                       \
        T* p, const T* g, T* m, T* v, int n, T step_size, T beta1, T beta2, T one_minus_beta1,   \
        T one_minus_beta2, T inv_bc2_sqrt, T eps) {                                              \
        adam_plain_body<T>(p, g, m, v, n, step_size, beta1, beta2, one_minus_beta1,              \
                           one_minus_beta2, inv_bc2_sqrt, eps);                                  \
    }                                                                                            \
    extern "C" __global__ void sgd_update_##SUFFIX(T* p, const T* g, T* buf, int n, double lr,   \
                                                   double momentum, double dampening,            \
                                                   double weight_decay, int nesterov,            \
                                                   int maximize, int first) {                    \
        sgd_body<T>(p, g, buf, n, lr, momentum, dampening, weight_decay, nesterov, maximize,     \
                    first);                                                                      \
    }
TG_STAMP(float, f32)
TG_STAMP(double, f64)
