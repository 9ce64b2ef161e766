// y = alpha * x + beta * z, elementwise: the CUDA twin of docs/examples/cpu_kernel.py.
// The same rules as kernels/cuda/*.cu (no #include, extern "C", exact scalar types), so the file
// compiles with NVRTC on a GPU and with g++ on the test suite's CPU emulator.

template <typename T>
__device__ void axpby_body(const T* x, const T* z, T alpha, T beta, T* y, long long n) {
    // a grid-stride loop: any grid size covers any n
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = alpha * x[i] + beta * z[i];
    }
}

extern "C" __global__ void axpby_f32(const float* x, const float* z, float alpha, float beta,
                                     float* y, long long n) {
    axpby_body<float>(x, z, alpha, beta, y, n);
}

extern "C" __global__ void axpby_f64(const double* x, const double* z, double alpha,
                                     double beta, double* y, long long n) {
    axpby_body<double>(x, z, alpha, beta, y, n);
}
