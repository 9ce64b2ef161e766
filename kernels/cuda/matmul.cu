// Matrix product C = A B (CUDA C), row-major C-contiguous A (M, K), B (K, N), C (M, N). Two rungs
// of a kernel ladder (llm.c's dev/cuda; Simon Boehm's "How to optimize a CUDA matmul kernel"):
//
// matmul_naive  one thread per element of C, a K-long dot product straight from global memory:
//               every A and B element is read from DRAM/L2 once per use, 2 loads per FMA.
//
// matmul_tiled  one block of 256 threads per 128x128 tile of C. The block walks K in steps of
//               BK = 8: its threads copy an A tile (128x8, stored transposed) and a B tile
//               (8x128) into shared memory, wait at a barrier, and each thread accumulates an
//               8x8 sub-tile of C in registers from them (an outer product per k: 8 + 8 shared
//               loads for 64 FMAs), then a barrier again before the next copy. Each element of A
//               and B is read from global memory M/128 or N/128 times fewer than naively.
//               Thread (ty, tx) of the 16x16 grid owns rows ty + 16 i and columns tx + 16 j
//               (i, j < 8) of the tile: a warp's reads of a B row in shared memory hit 16
//               consecutive words (no bank conflict) and its stores to C are 16-wide runs.
//               Launch with block (256,) and grid (ceil(N/128), ceil(M/128)); edges are
//               zero-padded on load and masked on store, so any M, N, K works.
//
// Kernel rules: see README.md in this folder.

template <typename T>
__device__ void naive_body(const T* A, const T* B, T* C, int M, int N, int K) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= M || col >= N) return;
    T acc = T(0);
    for (int k = 0; k < K; ++k) acc += A[(long long)row * K + k] * B[(long long)k * N + col];
    C[(long long)row * N + col] = acc;
}

#define TILE_M 128
#define TILE_N 128
#define TILE_K 8
#define THREAD_M 8
#define THREAD_N 8
#define TILED_THREADS 256   // (TILE_M / THREAD_M) * (TILE_N / THREAD_N)

template <typename T>
__device__ void tiled_body(const T* A, const T* B, T* C, int M, int N, int K) {
    __shared__ T As[TILE_K][TILE_M];    // A tile, transposed: As[k][m] = A[row0 + m, k0 + k]
    __shared__ T Bs[TILE_K][TILE_N];    // Bs[k][n] = B[k0 + k, col0 + n]
    const int tid = threadIdx.x;
    const int ty = tid / (TILE_N / THREAD_N), tx = tid % (TILE_N / THREAD_N);   // 16 x 16
    const int row0 = blockIdx.y * TILE_M, col0 = blockIdx.x * TILE_N;
    T acc[THREAD_M][THREAD_N];
    for (int i = 0; i < THREAD_M; ++i)
        for (int j = 0; j < THREAD_N; ++j) acc[i][j] = T(0);
    T a[THREAD_M], b[THREAD_N];

    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        for (int l = tid; l < TILE_M * TILE_K; l += TILED_THREADS) {   // 4 loads per thread
            const int m = l / TILE_K, k = l % TILE_K;
            const int r = row0 + m, c = k0 + k;
            As[k][m] = (r < M && c < K) ? A[(long long)r * K + c] : T(0);
        }
        for (int l = tid; l < TILE_K * TILE_N; l += TILED_THREADS) {
            const int k = l / TILE_N, n = l % TILE_N;
            const int r = k0 + k, c = col0 + n;
            Bs[k][n] = (r < K && c < N) ? B[(long long)r * N + c] : T(0);
        }
        __syncthreads();                  // the tiles are complete
#pragma unroll
        for (int k = 0; k < TILE_K; ++k) {
#pragma unroll
            for (int i = 0; i < THREAD_M; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < THREAD_N; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < THREAD_M; ++i)
#pragma unroll
                for (int j = 0; j < THREAD_N; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();                  // everyone is done reading before the next copy
    }
    for (int i = 0; i < THREAD_M; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= M) continue;
        for (int j = 0; j < THREAD_N; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c < N) C[(long long)r * N + c] = acc[i][j];
        }
    }
}

#define TG_STAMP(T, SUFFIX)                                                                     \
    extern "C" __global__ void matmul_naive_##SUFFIX(const T* A, const T* B, T* C, int M, int N, \
                                                     int K) {                                   \
        naive_body<T>(A, B, C, M, N, K);                                                        \
    }                                                                                           \
    extern "C" __global__ void matmul_tiled_##SUFFIX(const T* A, const T* B, T* C, int M, int N, \
                                                     int K) {                                   \
        tiled_body<T>(A, B, C, M, N, K);                                                        \
    }
TG_STAMP(float, f32)
TG_STAMP(double, f64)
