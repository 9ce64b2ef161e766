// Convolution kernels (CUDA C): im2col, col2im as a gather, and the batch/channel axis swap.
//
// The GEMMs of the convolution family run in cuBLAS (through CuPy's matmul, see conv.py); these
// kernels move the data around them. Geometry as in tinygen/kernels/geometry.py, one axis:
//
//     y[o] = sum_k w[k] * x[o*stride + k*dilation - pad]        (x is 0 outside [0, size_in))
//
// Layouts (all C-contiguous):
//   x     (N, C, H, W)            the convolution's input (the transposed conv's output)
//   cols  (C*kh*kw, N, OH*OW)     cols[(c*kh + i)*kw + j, n, oy*OW + ox]
//                                     = x[n, c, oy*sh + i*dh - ph, ox*sw + j*dw - pw]
//   with the batch folded into the GEMM's column index, so that each group is one large GEMM
//   (Og, Cg*kh*kw) x (Cg*kh*kw, N*OH*OW), as in the CPU path (kernels/cpu/conv.py).
//
// col2im is the adjoint of im2col. Written as a scatter it would need atomicAdd (overlapping
// windows add into the same pixel) and its sums would depend on the thread order; written as a
// gather, each thread owns one pixel of x and adds the cols entries that read it, in a fixed order
// (kernel row i, then column j, ascending), so the result is deterministic and needs no atomics.
//
// The naive rung of the ladder (conv.py's ALGORITHM = "direct"): the same three operations as
// direct loops, one thread per output element and no GEMM -- conv2d_direct, conv2d_transpose_direct
// (a gather too) and conv2d_weight_direct (each thread sums over the batch and the output pixels).
// Short and easy to check, and benchmarked against im2col + cuBLAS (benchmarks/bench_cuda_conv.py).
//
// Kernel rules (so that NVRTC, nvcc and the g++ emulator under tests/ all accept this file): no
// #include; extern "C" __global__ entry points with scalar or pointer parameters; 1-D launches with
// grid-stride loops (any grid and block size gives the same result); no shared memory, barriers or
// atomics here (no thread reads what another writes). float32 and float64 kernels come from one
// template body each, stamped out by TG_STAMP as <name>_f32 and <name>_f64.

// Index arithmetic: the flat element index is split into coordinates by divisions, which a GPU
// does in software, several times slower in 64 bits than in 32. Each body is therefore a template
// over the index type I, and the entry points run the 32-bit instance whenever every flat index
// of the launch fits (the 64-bit one only for arrays of 2^31 elements or more). Memory offsets
// are always computed in 64 bits.
#ifdef TG_FORCE_INDEX_64           // tests: run the 64-bit instances on small arrays
#define TG_FITS_32(total) false
#else
#define TG_FITS_32(total) ((total) < 2147483648LL)
#endif

// Grid-stride loop over the flat indices 0 .. total-1, in index type I.
#define TG_GRID_LOOP(I, idx, total)                                                              \
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < (I)(total);                     \
         idx += (I)blockDim.x * gridDim.x)

// The coordinates (a, b, c, d) of flat index idx in a C-contiguous (., nb, nc, nd) array.
template <typename I>
__device__ void tg_unravel4(I idx, int nb, int nc, int nd, int& a, int& b, int& c, int& d) {
    d = (int)(idx % (I)nd);
    idx /= (I)nd;
    c = (int)(idx % (I)nc);
    idx /= (I)nc;
    b = (int)(idx % (I)nb);
    a = (int)(idx / (I)nb);
}

// x[n, ch, r, s] of an (N, C, H, W) image, or 0 outside it (the zero padding).
template <typename T>
__device__ T tg_pixel(const T* x, int n, int ch, int r, int s, int n_chan, int height, int width) {
    if (r < 0 || r >= height || s < 0 || s >= width) return (T)0;
    return x[(((long long)n * n_chan + ch) * height + r) * width + s];
}

// The scalar parameters every kernel below takes: x's shape and the geometry of both axes.
#define TG_GEOM_PARAMS int n_batch, int n_chan, int height, int width, int kh, int kw, int sh,    \
                       int sw, int ph, int pw, int dh, int dw, int oh, int ow
#define TG_GEOM_ARGS n_batch, n_chan, height, width, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow

// One thread per element of cols: (row, n, p) with row = (c*kh + i)*kw + j, p = oy*ow + ox.
template <typename T, typename I>
__device__ void im2col_body(const T* x, T* cols, TG_GEOM_PARAMS, long long total) {
    TG_GRID_LOOP(I, idx, total) {
        int row, n, oy, ox;
        tg_unravel4<I>(idx, n_batch, oh, ow, row, n, oy, ox);
        const int j = row % kw;
        const int i = (row / kw) % kh;
        const int c = row / (kw * kh);
        cols[idx] = tg_pixel(x, n, c, oy * sh + i * dh - ph, ox * sw + j * dw - pw, n_chan,
                             height, width);
    }
}

// One thread per pixel of x: x[n, c, r, s] = sum over (i, j) and the output positions (oy, ox)
// with oy*sh + i*dh - ph = r and ox*sw + j*dw - pw = s of cols[(c*kh + i)*kw + j, n, oy*ow + ox].
template <typename T, typename I>
__device__ void col2im_body(const T* cols, T* x, TG_GEOM_PARAMS, long long total) {
    const long long p_count = (long long)oh * ow;
    TG_GRID_LOOP(I, idx, total) {
        int n, c, r, s;
        tg_unravel4<I>(idx, n_chan, height, width, n, c, r, s);
        T acc = (T)0;
        for (int i = 0; i < kh; ++i) {
            const int ty = r + ph - i * dh;              // = oy * sh when this row is read
            if (ty < 0) break;                           // ty only decreases with i
            if (ty % sh != 0 || ty / sh >= oh) continue;
            const int oy = ty / sh;
            for (int j = 0; j < kw; ++j) {
                const int tx = s + pw - j * dw;
                if (tx < 0) break;
                if (tx % sw != 0 || tx / sw >= ow) continue;
                const int ox = tx / sw;
                const long long row = ((long long)c * kh + i) * kw + j;
                acc += cols[(row * n_batch + n) * p_count + (long long)oy * ow + ox];
            }
        }
        x[idx] = acc;
    }
}

// dst (B, A, P) = src (A, B, P) with the two leading axes swapped: (N, C, P) <-> (C, N, P).
template <typename T, typename I>
__device__ void swap_leading_axes_body(const T* src, T* dst, int a, int b, long long p) {
    TG_GRID_LOOP(I, idx, (long long)a * b * p) {
        const I q = idx % (I)p;                          // idx indexes dst: (jb * a + ia) * p + q
        const I rest = idx / (I)p;
        const long long ia = (long long)(rest % (I)a);
        const long long jb = (long long)(rest / (I)a);
        dst[idx] = src[(ia * b + jb) * p + (long long)q];
    }
}

// -- the naive rung: direct convolution -----------------------------------------------------------
// Channels: C = groups * cg input, O = groups * og output; output channel o belongs to group
// o / og, whose input channels are g*cg .. g*cg + cg - 1; w is (O, cg, kh, kw).

// y[n, o, oy, ox] = sum_{c, i, j} w[o, c, i, j] x[n, g*cg + c, r, s]
//     with r = oy*sh + i*dh - ph, s = ox*sw + j*dw - pw (x is 0 outside)
template <typename T, typename I>
__device__ void conv2d_direct_body(const T* x, const T* w, T* y, TG_GEOM_PARAMS, int n_out,
                                   int groups, long long total) {
    const int cg = n_chan / groups, og = n_out / groups;
    TG_GRID_LOOP(I, idx, total) {
        int n, o, oy, ox;
        tg_unravel4<I>(idx, n_out, oh, ow, n, o, oy, ox);
        const int g = o / og;
        const T* wo = w + (long long)o * cg * kh * kw;                   // w[o] (cg, kh, kw)
        T acc = (T)0;
        for (int c = 0; c < cg; ++c)
            for (int i = 0; i < kh; ++i)
                for (int j = 0; j < kw; ++j)
                    acc += wo[(c * kh + i) * kw + j] *
                           tg_pixel(x, n, g * cg + c, oy * sh + i * dh - ph, ox * sw + j * dw - pw,
                                    n_chan, height, width);
        y[idx] = acc;
    }
}

// x[n, g*cg + c, r, s] = sum over o of group g and (i, j, oy, ox) with oy*sh + i*dh - ph = r,
// ox*sw + j*dw - pw = s of w[o, c, i, j] y[n, o, oy, ox]: the adjoint of conv2d_direct, a gather.
template <typename T, typename I>
__device__ void conv2d_transpose_direct_body(const T* y, const T* w, T* x, TG_GEOM_PARAMS,
                                             int n_out, int groups, long long total) {
    const int cg = n_chan / groups, og = n_out / groups;
    TG_GRID_LOOP(I, idx, total) {
        int n, channel, r, s;
        tg_unravel4<I>(idx, n_chan, height, width, n, channel, r, s);
        const int g = channel / cg, c = channel % cg;
        T acc = (T)0;
        for (int i = 0; i < kh; ++i) {
            const int ty = r + ph - i * dh;
            if (ty < 0) break;
            if (ty % sh != 0 || ty / sh >= oh) continue;
            const int oy = ty / sh;
            for (int j = 0; j < kw; ++j) {
                const int tx = s + pw - j * dw;
                if (tx < 0) break;
                if (tx % sw != 0 || tx / sw >= ow) continue;
                const int ox = tx / sw;
                for (int k = 0; k < og; ++k) {
                    const int o = g * og + k;
                    acc += w[(((long long)o * cg + c) * kh + i) * kw + j] *
                           y[(((long long)n * n_out + o) * oh + oy) * ow + ox];
                }
            }
        }
        x[idx] = acc;
    }
}

// dw[o, c, i, j] = sum_{n, oy, ox} gy[n, o, oy, ox] x[n, g*cg + c, r, s]   (r, s as above)
template <typename T, typename I>
__device__ void conv2d_weight_direct_body(const T* x, const T* gy, T* dwt, TG_GEOM_PARAMS,
                                          int n_out, int groups, long long total) {
    const int cg = n_chan / groups, og = n_out / groups;
    TG_GRID_LOOP(I, idx, total) {
        int o, c, i, j;
        tg_unravel4<I>(idx, cg, kh, kw, o, c, i, j);
        const int g = o / og;
        T acc = (T)0;
        for (int n = 0; n < n_batch; ++n) {
            const T* gyo = gy + ((long long)n * n_out + o) * oh * ow;      // gy[n, o] (oh, ow)
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox)
                    acc += gyo[oy * ow + ox] *
                           tg_pixel(x, n, g * cg + c, oy * sh + i * dh - ph, ox * sw + j * dw - pw,
                                    n_chan, height, width);
        }
        dwt[idx] = acc;
    }
}

// Run body<T, 32-bit index> when total fits, else body<T, 64-bit index>.
#define TG_DISPATCH(body, T, total, ...)                                                         \
    if (TG_FITS_32(total)) body<T, unsigned int>(__VA_ARGS__, total);                            \
    else body<T, long long>(__VA_ARGS__, total);

#define TG_STAMP(SUF, T)                                                                         \
extern "C" __global__ void im2col_##SUF(const T* x, T* cols, TG_GEOM_PARAMS) {                   \
    const long long total = (long long)n_chan * kh * kw * n_batch * oh * ow;                     \
    TG_DISPATCH(im2col_body, T, total, x, cols, TG_GEOM_ARGS)                                    \
}                                                                                                \
extern "C" __global__ void col2im_##SUF(const T* cols, T* x, TG_GEOM_PARAMS) {                   \
    const long long total = (long long)n_batch * n_chan * height * width;                        \
    TG_DISPATCH(col2im_body, T, total, cols, x, TG_GEOM_ARGS)                                    \
}                                                                                                \
extern "C" __global__ void conv2d_direct_##SUF(const T* x, const T* w, T* y, TG_GEOM_PARAMS,     \
                                               int n_out, int groups) {                          \
    const long long total = (long long)n_batch * n_out * oh * ow;                                \
    TG_DISPATCH(conv2d_direct_body, T, total, x, w, y, TG_GEOM_ARGS, n_out, groups)              \
}                                                                                                \
extern "C" __global__ void conv2d_transpose_direct_##SUF(const T* y, const T* w, T* x,          \
                                                         TG_GEOM_PARAMS, int n_out, int groups) {\
    const long long total = (long long)n_batch * n_chan * height * width;                        \
    TG_DISPATCH(conv2d_transpose_direct_body, T, total, y, w, x, TG_GEOM_ARGS, n_out, groups)    \
}                                                                                                \
extern "C" __global__ void conv2d_weight_direct_##SUF(const T* x, const T* gy, T* dwt,          \
                                                      TG_GEOM_PARAMS, int n_out, int groups) {   \
    const long long total = (long long)n_out * (n_chan / groups) * kh * kw;                      \
    TG_DISPATCH(conv2d_weight_direct_body, T, total, x, gy, dwt, TG_GEOM_ARGS, n_out, groups)    \
}                                                                                                \
extern "C" __global__ void swap_leading_axes_##SUF(const T* src, T* dst, int a, int b,          \
                                                   long long p) {                                \
    if (TG_FITS_32((long long)a * b * p)) swap_leading_axes_body<T, unsigned int>(src, dst, a,   \
                                                                                  b, p);         \
    else swap_leading_axes_body<T, long long>(src, dst, a, b, p);                                \
}

TG_STAMP(f32, float)
TG_STAMP(f64, double)
