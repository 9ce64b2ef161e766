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

// One thread per element of cols: (row, n, p) with row = (c*kh + i)*kw + j, p = oy*ow + ox.
template <typename T, typename I>
__device__ void im2col_body(const T* x, T* cols, int n_batch, int n_chan, int height, int width,
                            int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                            int oh, int ow, long long total) {
    const I p_count = (I)oh * (I)ow;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < (I)total;
         idx += (I)blockDim.x * gridDim.x) {
        const I p = idx % p_count;
        const I rest = idx / p_count;                   // row * n_batch + n
        const int n = (int)(rest % (I)n_batch);
        const int row = (int)(rest / (I)n_batch);
        const int j = row % kw;
        const int i = (row / kw) % kh;
        const int c = row / (kw * kh);
        const int oy = (int)(p / (I)ow);
        const int ox = (int)(p % (I)ow);
        const int r = oy * sh + i * dh - ph;
        const int s = ox * sw + j * dw - pw;
        T v = (T)0;
        if (r >= 0 && r < height && s >= 0 && s < width) {
            v = x[(((long long)n * n_chan + c) * height + r) * width + s];
        }
        cols[idx] = v;
    }
}

// One thread per pixel of x: x[n, c, r, s] = sum over (i, j) and the output positions (oy, ox)
// with oy*sh + i*dh - ph = r and ox*sw + j*dw - pw = s of cols[(c*kh + i)*kw + j, n, oy*ow + ox].
template <typename T, typename I>
__device__ void col2im_body(const T* cols, T* x, int n_batch, int n_chan, int height, int width,
                            int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                            int oh, int ow, long long total) {
    const long long p_count = (long long)oh * ow;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < (I)total;
         idx += (I)blockDim.x * gridDim.x) {
        const int s = (int)(idx % (I)width);
        const I rest = idx / (I)width;                  // (n * n_chan + c) * height + r
        const int r = (int)(rest % (I)height);
        const I nc = rest / (I)height;
        const int c = (int)(nc % (I)n_chan);
        const int n = (int)(nc / (I)n_chan);
        T acc = (T)0;
        for (int i = 0; i < kh; ++i) {
            const int ty = r + ph - i * dh;              // = oy * sh when this row is read
            if (ty < 0) break;                           // ty only decreases with i
            if (ty % sh != 0) continue;
            const int oy = ty / sh;
            if (oy >= oh) continue;
            for (int j = 0; j < kw; ++j) {
                const int tx = s + pw - j * dw;
                if (tx < 0) break;
                if (tx % sw != 0) continue;
                const int ox = tx / sw;
                if (ox >= ow) continue;
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
    const long long total = (long long)a * b * p;
    for (I idx = (I)blockIdx.x * blockDim.x + threadIdx.x; idx < (I)total;
         idx += (I)blockDim.x * gridDim.x) {
        const I q = idx % (I)p;                          // idx indexes dst: (jb * a + ia) * p + q
        const I rest = idx / (I)p;
        const long long ia = (long long)(rest % (I)a);
        const long long jb = (long long)(rest / (I)a);
        dst[idx] = src[(ia * b + jb) * p + (long long)q];
    }
}

#define TG_GEOM_PARAMS int n_batch, int n_chan, int height, int width, int kh, int kw, int sh,    \
                       int sw, int ph, int pw, int dh, int dw, int oh, int ow
#define TG_GEOM_ARGS n_batch, n_chan, height, width, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow
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
extern "C" __global__ void swap_leading_axes_##SUF(const T* src, T* dst, int a, int b,          \
                                                   long long p) {                                \
    if (TG_FITS_32((long long)a * b * p)) swap_leading_axes_body<T, unsigned int>(src, dst, a,   \
                                                                                  b, p);         \
    else swap_leading_axes_body<T, long long>(src, dst, a, b, p);                                \
}

TG_STAMP(f32, float)
TG_STAMP(f64, double)
