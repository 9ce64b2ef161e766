// LSTM kernels (CUDA C): the gates of one time step fused into one elementwise kernel.
//
// Gate layout as in PyTorch: the 4H pre-activations of a step are the blocks i, f, g, o (input,
// forget, cell candidate, output gate), each of width H:
//
//     z_t = xg_t + W_hh h_{t-1}       (xg_t = W_ih x_t + b_ih + b_hh, computed for all t at once)
//     i = sigma(z_i), f = sigma(z_f), g = tanh(z_g), o = sigma(z_o)
//     c_t = f * c_{t-1} + i * g,      h_t = o * tanh(c_t)
//
// Backward through time, with dh, dc the gradients reaching h_t, c_t:
//
//     dc   = dc_{t+1 -> t} + dh * o * (1 - tanh(c_t)^2)
//     dz_i = dc * g * i (1 - i),   dz_f = dc * c_{t-1} * f (1 - f),
//     dz_g = dc * i * (1 - g^2),   dz_o = dh * tanh(c_t) * o (1 - o),    dc_{t-1} = dc * f
//
// Two ways to run the recurrence (lstm.py chooses, see RECURRENCE there):
// * per step: the recurrent GEMMs (h_{t-1} W_hh^T forward, dz_t W_hh backward) run in cuBLAS
//   through CuPy and each step is then one launch of a fused gate kernel (lstm_step_*);
// * whole sequence (lstm_seq_*): one block per sample runs the entire time loop, its
//   matrix-vector products included, in one launch forward and one backward.
// PixelRNN's convolutional LSTM (the state a line of L positions, the state-to-state map a 1-D
// convolution of k taps) has its convolution fused into the gate kernels: one launch per step
// forward and backward.
//
// Kernel rules (so that NVRTC, nvcc and the g++ emulator under tests/ all accept this file): no
// #include; extern "C" __global__ entry points with scalar or pointer parameters; 1-D launches with
// grid-stride loops. The per-step kernels give each thread its own output elements (no shared
// memory, barriers or atomics); the whole-sequence kernels use static shared memory and
// __syncthreads only in loops that every thread of the block runs alike, and no block reads what
// another writes. float32 and float64 kernels come from one template body each, stamped out by
// TG_STAMP as <name>_f32 and <name>_f64.

__device__ float tg_exp(float x) { return expf(x); }
__device__ double tg_exp(double x) { return exp(x); }
__device__ float tg_tanh(float x) { return tanhf(x); }
__device__ double tg_tanh(double x) { return tanh(x); }

// Logistic sigmoid without overflow: exp is only taken of a non-positive number.
template <typename T>
__device__ T tg_sigmoid(T x) {
    if (x >= (T)0) return (T)1 / ((T)1 + tg_exp(-x));
    const T e = tg_exp(x);
    return e / ((T)1 + e);
}

#define TG_LOOP(idx, total)                                                                      \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < (total);        \
         idx += (long long)blockDim.x * gridDim.x)

// One cell step from its pre-activations z (N, 4H) and c_prev (N, H): h, c (N, H).
template <typename T>
__device__ void lstm_cell_forward_body(const T* z, const T* c_prev, T* h, T* c, int n_batch,
                                       int hid) {
    TG_LOOP(idx, (long long)n_batch * hid) {
        const long long n = idx / hid, j = idx % hid;
        const T* zr = z + n * 4 * hid;
        const T ig = tg_sigmoid(zr[j]);
        const T fg = tg_sigmoid(zr[hid + j]);
        const T gg = tg_tanh(zr[2 * hid + j]);
        const T og = tg_sigmoid(zr[3 * hid + j]);
        const T cn = fg * c_prev[idx] + ig * gg;
        c[idx] = cn;
        h[idx] = og * tg_tanh(cn);
    }
}

// One step of the recurrence: z = xg_t + zh (both (N, 4H), zh = h_{t-1} W_hh^T); writes the gate
// activations acts_t (N, 4H), c_t and h_t (N, H).
template <typename T>
__device__ void lstm_step_forward_body(const T* xg_t, const T* zh, const T* c_prev, T* acts_t,
                                       T* c_t, T* h_t, int n_batch, int hid) {
    TG_LOOP(idx, (long long)n_batch * hid) {
        const long long n = idx / hid, j = idx % hid;
        const long long row = n * 4 * hid;
        const T ig = tg_sigmoid(xg_t[row + j] + zh[row + j]);
        const T fg = tg_sigmoid(xg_t[row + hid + j] + zh[row + hid + j]);
        const T gg = tg_tanh(xg_t[row + 2 * hid + j] + zh[row + 2 * hid + j]);
        const T og = tg_sigmoid(xg_t[row + 3 * hid + j] + zh[row + 3 * hid + j]);
        const T cn = fg * c_prev[idx] + ig * gg;
        acts_t[row + j] = ig;
        acts_t[row + hid + j] = fg;
        acts_t[row + 2 * hid + j] = gg;
        acts_t[row + 3 * hid + j] = og;
        c_t[idx] = cn;
        h_t[idx] = og * tg_tanh(cn);
    }
}

// The gate part of the gradient at step t, given the gradient dh_rec = dz_{t+1} W_hh reaching h_t
// through the recurrence (ignored when has_rec is 0, at the last step). dc (N, H) holds the
// gradient reaching c_t on entry and the one reaching c_{t-1} on exit; writes dz_t (N, 4H).
template <typename T>
__device__ void lstm_step_backward_body(const T* dh_t, const T* dh_rec, const T* acts_t,
                                        const T* c_t, const T* c_prev, T* dc, T* dz_t,
                                        int n_batch, int hid, int has_rec) {
    TG_LOOP(idx, (long long)n_batch * hid) {
        const long long n = idx / hid, j = idx % hid;
        const long long row = n * 4 * hid;
        const T ig = acts_t[row + j];
        const T fg = acts_t[row + hid + j];
        const T gg = acts_t[row + 2 * hid + j];
        const T og = acts_t[row + 3 * hid + j];
        const T tc = tg_tanh(c_t[idx]);
        const T dh = has_rec ? dh_t[idx] + dh_rec[idx] : dh_t[idx];
        const T dct = dc[idx] + dh * og * ((T)1 - tc * tc);
        dz_t[row + j] = dct * gg * ig * ((T)1 - ig);
        dz_t[row + hid + j] = dct * c_prev[idx] * fg * ((T)1 - fg);
        dz_t[row + 2 * hid + j] = dct * ig * ((T)1 - gg * gg);
        dz_t[row + 3 * hid + j] = dh * tc * og * ((T)1 - og);
        dc[idx] = dct * fg;
    }
}

// -- the whole recurrence in one launch: one block per sample -------------------------------------
// The samples of a batch never interact, so one block can run the whole time loop of one sample
// (grid-stride over the samples), its own matrix-vector product W_hh h_{t-1} included, with
// __syncthreads between steps: one launch for the sequence instead of two per step (a GEMM and
// the gate kernel), at the price of each block reading W_hh once per step (from L2). Threads own
// hidden units j (j = threadIdx.x, + blockDim.x, ...). Shared memory holds the state vector of
// the current sample, double-buffered so that one barrier per step separates the reads of
// h_{t-1} from the writes of h_t. Barriers sit only in loops whose bounds are the same for every
// thread of the block (samples, steps).
#define TG_LSTM_MAX_HID 1024

// Forward. xg (T, N, 4H); h0, c0 (N, H); w_hh_t (H, 4H) = W_hh^T, so that for a fixed k the
// threads read consecutive entries w_hh_t[k, g*H + j]; outputs hs, cs (T, N, H), acts (T, N, 4H).
template <typename T>
__device__ void lstm_seq_forward_body(const T* xg, const T* h0, const T* c0, const T* w_hh_t,
                                      T* hs, T* cs, T* acts, int steps, int n_batch, int hid) {
    __shared__ T h_sh[2][TG_LSTM_MAX_HID];
    const long long h4 = 4LL * hid;
    for (int n = blockIdx.x; n < n_batch; n += gridDim.x) {
        for (int j = threadIdx.x; j < hid; j += blockDim.x) h_sh[0][j] = h0[(long long)n * hid + j];
        __syncthreads();
        for (int t = 0; t < steps; ++t) {
            const T* h_prev = h_sh[t & 1];
            const long long row = ((long long)t * n_batch + n) * h4;           // (t, n) of xg, acts
            const long long state = ((long long)t * n_batch + n) * hid;        // (t, n) of hs, cs
            for (int j = threadIdx.x; j < hid; j += blockDim.x) {
                T zi = xg[row + j], zf = xg[row + hid + j];
                T zg = xg[row + 2 * hid + j], zo = xg[row + 3 * hid + j];
                for (int k = 0; k < hid; ++k) {
                    const T hk = h_prev[k];
                    const T* w = w_hh_t + k * h4 + j;
                    zi += w[0] * hk;
                    zf += w[hid] * hk;
                    zg += w[2 * hid] * hk;
                    zo += w[3 * hid] * hk;
                }
                const T ig = tg_sigmoid(zi), fg = tg_sigmoid(zf);
                const T gg = tg_tanh(zg), og = tg_sigmoid(zo);
                const T c_prev = t > 0 ? cs[state - (long long)n_batch * hid + j]
                                       : c0[(long long)n * hid + j];
                const T cn = fg * c_prev + ig * gg;
                const T hn = og * tg_tanh(cn);
                acts[row + j] = ig;
                acts[row + hid + j] = fg;
                acts[row + 2 * hid + j] = gg;
                acts[row + 3 * hid + j] = og;
                cs[state + j] = cn;
                hs[state + j] = hn;
                h_sh[(t + 1) & 1][j] = hn;
            }
            __syncthreads();
        }
    }
}

// Backward through time, the counterpart of lstm_seq_forward: dhs (T, N, H) the gradients reaching
// h_1..h_T, dc (N, H) the one reaching c_T on entry and c_0 on exit; writes dz (T, N, 4H) and dh0
// (N, H). The gradient reaching h_{t-1} through the recurrence, dz_t W_hh, is a matrix-vector
// product of the block's own dz_t row (read back from global memory after a barrier) with
// w_hh (4H, H), threads reading consecutive entries w_hh[r, j].
template <typename T>
__device__ void lstm_seq_backward_body(const T* dhs, const T* acts, const T* cs, const T* c0,
                                       const T* w_hh, T* dc, T* dz, T* dh0, int steps,
                                       int n_batch, int hid) {
    __shared__ T dh_sh[2][TG_LSTM_MAX_HID];
    const long long h4 = 4LL * hid;
    for (int n = blockIdx.x; n < n_batch; n += gridDim.x) {
        for (int j = threadIdx.x; j < hid; j += blockDim.x) dh_sh[0][j] = (T)0;
        __syncthreads();
        for (int t = steps - 1; t >= 0; --t) {
            const int cur = (steps - 1 - t) & 1;
            const long long row = ((long long)t * n_batch + n) * h4;
            const long long state = ((long long)t * n_batch + n) * hid;
            for (int j = threadIdx.x; j < hid; j += blockDim.x) {
                const T ig = acts[row + j], fg = acts[row + hid + j];
                const T gg = acts[row + 2 * hid + j], og = acts[row + 3 * hid + j];
                const T tc = tg_tanh(cs[state + j]);
                const T c_prev = t > 0 ? cs[state - (long long)n_batch * hid + j]
                                       : c0[(long long)n * hid + j];
                const T dh = dhs[state + j] + dh_sh[cur][j];
                const long long nj = (long long)n * hid + j;
                const T dct = dc[nj] + dh * og * ((T)1 - tc * tc);
                dz[row + j] = dct * gg * ig * ((T)1 - ig);
                dz[row + hid + j] = dct * c_prev * fg * ((T)1 - fg);
                dz[row + 2 * hid + j] = dct * ig * ((T)1 - gg * gg);
                dz[row + 3 * hid + j] = dh * tc * og * ((T)1 - og);
                dc[nj] = dct * fg;
            }
            __syncthreads();                             // the block's dz_t row is complete
            for (int j = threadIdx.x; j < hid; j += blockDim.x) {
                T acc = (T)0;
                for (int r = 0; r < 4 * hid; ++r) acc += dz[row + r] * w_hh[(long long)r * hid + j];
                dh_sh[cur ^ 1][j] = acc;
                if (t == 0) dh0[(long long)n * hid + j] = acc;
            }
            __syncthreads();
        }
    }
}

// -- LSTM whose state-to-state map is a 1-D convolution (PixelRNN) --------------------------------
// State (N, h, L); kernel K (4h, h, k), tap t reading position p + t - anchor of h_{t-1}:
//     z_t[n, r, p] = xg_t[n, r, p] + sum_{u, t} K[r, u, t] h_{t-1}[n, u, p + t - anchor]

// One forward step (first = 1: h_0 = c_0 = 0, h_prev and c_prev are not read).
template <typename T>
__device__ void conv_lstm_step_forward_body(const T* xg_t, const T* h_prev, const T* c_prev,
                                            const T* kernel, T* acts_t, T* c_t, T* h_t,
                                            int n_batch, int hid, int length, int taps,
                                            int anchor, int first) {
    TG_LOOP(idx, (long long)n_batch * hid * length) {
        const long long p = idx % length;
        const long long j = (idx / length) % hid;
        const long long n = idx / ((long long)length * hid);
        T z[4];
        for (int gate = 0; gate < 4; ++gate) {
            const long long r = gate * (long long)hid + j;               // row of K and of z
            T acc = xg_t[(n * 4 * hid + r) * length + p];
            if (!first) {
                for (int u = 0; u < hid; ++u) {
                    const T* hrow = h_prev + (n * hid + u) * length;
                    const T* krow = kernel + (r * hid + u) * taps;
                    for (int t = 0; t < taps; ++t) {
                        const long long q = p + t - anchor;
                        if (q >= 0 && q < length) acc += krow[t] * hrow[q];
                    }
                }
            }
            z[gate] = acc;
        }
        const T ig = tg_sigmoid(z[0]);
        const T fg = tg_sigmoid(z[1]);
        const T gg = tg_tanh(z[2]);
        const T og = tg_sigmoid(z[3]);
        const T cn = fg * (first ? (T)0 : c_prev[idx]) + ig * gg;
        const long long base = n * 4 * hid * (long long)length + j * length + p;
        acts_t[base] = ig;
        acts_t[base + (long long)hid * length] = fg;
        acts_t[base + 2LL * hid * length] = gg;
        acts_t[base + 3LL * hid * length] = og;
        c_t[idx] = cn;
        h_t[idx] = og * tg_tanh(cn);
    }
}

// One backward step: the gradient reaching h_t through the recurrence is gathered from
// dz_{t+1} (has_next = 1; not read at the last step):
//     dh_rec[n, u, q] = sum_{r, t} K[r, u, t] dz_{t+1}[n, r, q - (t - anchor)]   (inside the line)
// first = 1 at t = 0 (c_{-1} = 0, c_prev not read). dc (N, h, L) in/out as in the plain LSTM.
template <typename T>
__device__ void conv_lstm_step_backward_body(const T* dh_t, const T* dz_next, const T* kernel,
                                             const T* acts_t, const T* c_t, const T* c_prev,
                                             T* dc, T* dz_t, int n_batch, int hid, int length,
                                             int taps, int anchor, int has_next, int first) {
    TG_LOOP(idx, (long long)n_batch * hid * length) {
        const long long p = idx % length;
        const long long j = (idx / length) % hid;
        const long long n = idx / ((long long)length * hid);
        T dh = dh_t[idx];
        if (has_next) {
            for (int r = 0; r < 4 * hid; ++r) {
                const T* dzrow = dz_next + (n * 4 * hid + r) * length;
                const T* krow = kernel + (r * (long long)hid + j) * taps;
                for (int t = 0; t < taps; ++t) {
                    const long long q = p - (t - anchor);
                    if (q >= 0 && q < length) dh += krow[t] * dzrow[q];
                }
            }
        }
        const long long base = n * 4 * hid * (long long)length + j * length + p;
        const long long gs = (long long)hid * length;                    // gate block stride
        const T ig = acts_t[base];
        const T fg = acts_t[base + gs];
        const T gg = acts_t[base + 2 * gs];
        const T og = acts_t[base + 3 * gs];
        const T tc = tg_tanh(c_t[idx]);
        const T cp = first ? (T)0 : c_prev[idx];
        const T dct = dc[idx] + dh * og * ((T)1 - tc * tc);
        dz_t[base] = dct * gg * ig * ((T)1 - ig);
        dz_t[base + gs] = dct * cp * fg * ((T)1 - fg);
        dz_t[base + 2 * gs] = dct * ig * ((T)1 - gg * gg);
        dz_t[base + 3 * gs] = dh * tc * og * ((T)1 - og);
        dc[idx] = dct * fg;
    }
}

// The state kernel's gradient over the whole sequence, one thread per entry (r, u, t) of K:
//     dK[r, u, t] = sum_{s >= 1, n, p} dz_s[n, r, p] h_{s-1}[n, u, p + t - anchor]
// dz (T, N, 4h, L), hs (T, N, h, L); summed in a fixed order (deterministic, no atomics).
template <typename T>
__device__ void conv_lstm_kernel_grad_body(const T* dz, const T* hs, T* dkernel, int steps,
                                           int n_batch, int hid, int length, int taps,
                                           int anchor) {
    TG_LOOP(idx, 4LL * hid * hid * taps) {
        const int t = (int)(idx % taps);
        const long long u = (idx / taps) % hid;
        const long long r = idx / ((long long)taps * hid);
        const int shift = t - anchor;
        const int lo = shift < 0 ? -shift : 0;
        const int hi = shift > 0 ? length - shift : length;
        T acc = (T)0;
        for (int s = 1; s < steps; ++s) {
            for (int n = 0; n < n_batch; ++n) {
                const T* dzrow = dz + (((long long)s * n_batch + n) * 4 * hid + r) * length;
                const T* hrow = hs + (((long long)(s - 1) * n_batch + n) * hid + u) * length;
                for (int p = lo; p < hi; ++p) acc += dzrow[p] * hrow[p + shift];
            }
        }
        dkernel[idx] = acc;
    }
}

#define TG_STAMP(SUF, T)                                                                         \
extern "C" __global__ void lstm_cell_forward_##SUF(const T* z, const T* c_prev, T* h, T* c,     \
                                                   int n_batch, int hid) {                       \
    lstm_cell_forward_body<T>(z, c_prev, h, c, n_batch, hid);                                    \
}                                                                                                \
extern "C" __global__ void lstm_step_forward_##SUF(const T* xg_t, const T* zh, const T* c_prev, \
                                                   T* acts_t, T* c_t, T* h_t, int n_batch,       \
                                                   int hid) {                                    \
    lstm_step_forward_body<T>(xg_t, zh, c_prev, acts_t, c_t, h_t, n_batch, hid);                 \
}                                                                                                \
extern "C" __global__ void lstm_step_backward_##SUF(const T* dh_t, const T* dh_rec,             \
                                                    const T* acts_t, const T* c_t,               \
                                                    const T* c_prev, T* dc, T* dz_t,             \
                                                    int n_batch, int hid, int has_rec) {         \
    lstm_step_backward_body<T>(dh_t, dh_rec, acts_t, c_t, c_prev, dc, dz_t, n_batch, hid,        \
                               has_rec);                                                         \
}                                                                                                \
extern "C" __global__ void lstm_seq_forward_##SUF(const T* xg, const T* h0, const T* c0,         \
                                                 const T* w_hh_t, T* hs, T* cs, T* acts,         \
                                                 int steps, int n_batch, int hid) {              \
    lstm_seq_forward_body<T>(xg, h0, c0, w_hh_t, hs, cs, acts, steps, n_batch, hid);             \
}                                                                                                \
extern "C" __global__ void lstm_seq_backward_##SUF(const T* dhs, const T* acts, const T* cs,     \
                                                  const T* c0, const T* w_hh, T* dc, T* dz,      \
                                                  T* dh0, int steps, int n_batch, int hid) {     \
    lstm_seq_backward_body<T>(dhs, acts, cs, c0, w_hh, dc, dz, dh0, steps, n_batch, hid);        \
}                                                                                                \
extern "C" __global__ void conv_lstm_step_forward_##SUF(                                         \
        const T* xg_t, const T* h_prev, const T* c_prev, const T* kernel, T* acts_t, T* c_t,     \
        T* h_t, int n_batch, int hid, int length, int taps, int anchor, int first) {             \
    conv_lstm_step_forward_body<T>(xg_t, h_prev, c_prev, kernel, acts_t, c_t, h_t, n_batch,      \
                                   hid, length, taps, anchor, first);                            \
}                                                                                                \
extern "C" __global__ void conv_lstm_step_backward_##SUF(                                        \
        const T* dh_t, const T* dz_next, const T* kernel, const T* acts_t, const T* c_t,         \
        const T* c_prev, T* dc, T* dz_t, int n_batch, int hid, int length, int taps, int anchor, \
        int has_next, int first) {                                                               \
    conv_lstm_step_backward_body<T>(dh_t, dz_next, kernel, acts_t, c_t, c_prev, dc, dz_t,        \
                                    n_batch, hid, length, taps, anchor, has_next, first);        \
}                                                                                                \
extern "C" __global__ void conv_lstm_kernel_grad_##SUF(const T* dz, const T* hs, T* dkernel,     \
                                                       int steps, int n_batch, int hid,          \
                                                       int length, int taps, int anchor) {       \
    conv_lstm_kernel_grad_body<T>(dz, hs, dkernel, steps, n_batch, hid, length, taps, anchor);   \
}

TG_STAMP(f32, float)
TG_STAMP(f64, double)
