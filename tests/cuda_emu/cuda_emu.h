// CPU emulator of the CUDA built-ins used by tinygen's kernels (tests only, never installed).
//
// g++ compiles a kernels/cuda/*.cu file UNCHANGED with this header force-included
// (`g++ -include cuda_emu.h`). Each CUDA thread of a block is a fiber (a user-level stack and a
// hand-written x86-64 context switch); blocks run one after another; a thread runs until it
// reaches a scheduling point (__syncthreads, __syncwarp, a warp shuffle) or its end, then the
// scheduler resumes the next runnable thread in the chosen order: forward, reverse, or seeded
// random (re-drawn every round). Errors are reported, never silently tolerated:
//   * barrier divergence: a thread exits, or waits at another __syncthreads line, while others
//     wait at a __syncthreads;
//   * warp-function misuse: a mask without the caller's lane, a mask naming a lane that does not
//     exist, lanes of one mask calling different warp functions or masks; deadlock;
//   * shared memory (`__shared__`, a static in section "emu_shared") is poisoned with 0xFF bytes
//     (NaN for float/double) at every block start, so a read before a write shows.
// Sanitizer builds: AddressSanitizer fiber annotations; ThreadSanitizer sees every CUDA thread as
// a TSan fiber with NO implicit happens-before between fibers, so a race between two blocks
// (a cross-block `+=` without atomicAdd) is reported; __syncthreads/__syncwarp release/acquire a
// token private to the block, so races inside a block are judged exactly as CUDA's rules do.
#pragma once
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN 1
extern "C" void __tsan_ignore_thread_begin();  // in the runtime, not in the public header
extern "C" void __tsan_ignore_thread_end();
#endif

// ---- CUDA keywords ----------------------------------------------------------------------------
#ifdef EMU_SCAN  // signature scan (g++ -E): a marker the Python side finds kernels by
#define __global__ __emu_kernel__
#else
#define __global__ __attribute__((noinline))
#endif
#define __device__
#define __host__
#define __forceinline__
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#if EMU_TSAN
// Each block runs on a fresh OS thread (see emu_launch), so per-thread storage is per-block
// storage with a fresh ThreadSanitizer shadow; not poisoned (the order runs check that).
#define __shared__ static thread_local
#else
#define __shared__ static __attribute__((section("emu_shared")))
#endif
#define __constant__ static const

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
static const int warpSize = 32;

namespace emu {

enum State { RUNNABLE, AT_BARRIER, AT_WARP, DONE };
enum WarpOp { OP_SYNCWARP, OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR };

struct Fiber {
    void* sp = nullptr;            // saved stack pointer while switched out
    char* stack = nullptr;
    size_t stack_size = 0;
    State state = DONE;
    uint3 tid{0, 0, 0};
    unsigned linear = 0, lane = 0, warp = 0;
    int line = 0;                  // source line of the barrier / warp op it waits at
    int op = 0;
    unsigned mask = 0;
    uint64_t value = 0;            // shuffle operand (bits)
    int src = 0;                   // shuffle lane / delta
    int width = 32;
    uint64_t result = 0;
#if EMU_TSAN
    void* tsan_fiber = nullptr;
#endif
};

struct Launch {
    void (*thunk)(void**) = nullptr;
    void** args = nullptr;
    uint3 block_idx{0, 0, 0};
    dim3 grid, block;
    std::vector<Fiber> fibers;
    unsigned nthreads = 0;
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
    char error[1024] = {0};
    bool failed = false;
#if EMU_ASAN
    void* asan_fake = nullptr;
    const void* main_stack_bottom = nullptr;
    size_t main_stack_size = 0;
#endif
#if EMU_TSAN
    void* tsan_main = nullptr;
    char* block_token = nullptr;   // released/acquired by __syncthreads, fresh per block
    std::vector<char*> warp_tokens;
    char* launch_token = nullptr;  // released by every thread at its end, acquired by the host
    std::vector<void*> dead_fibers;
#endif
};

extern Launch* L;   // the launch in progress (one at a time; set by emu_launch)

}  // namespace emu

#define threadIdx (emu::L->cur->tid)
#define blockIdx (emu::L->block_idx)
#define blockDim (emu::L->block)
#define gridDim (emu::L->grid)

// ---- context switch (x86-64 System V: save callee-saved registers, swap stacks) --------------
extern "C" void emu_switch(void** save_sp, void* load_sp);
__asm__(
    ".text\n"
    ".globl emu_switch\n"
    ".hidden emu_switch\n"
    ".type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n");

#define EMU_INTERNAL __attribute__((noinline, no_sanitize("address", "thread", "undefined")))

namespace emu {

Launch* L = nullptr;

EMU_INTERNAL static void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
EMU_INTERNAL static void fail(const char* fmt, ...) {
    if (L->failed) return;
    L->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->error, sizeof L->error, fmt, ap);
    va_end(ap);
}

// Switch from the current fiber to the scheduler (never establishes happens-before for TSan).
EMU_INTERNAL static void to_scheduler() {
    Fiber* f = L->cur;
#if EMU_TSAN
    __tsan_switch_to_fiber(L->tsan_main, __tsan_switch_to_fiber_no_sync);
#endif
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(f->state == DONE ? nullptr : &fake, L->main_stack_bottom,
                                   L->main_stack_size);
#endif
    emu_switch(&f->sp, L->sched_sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

EMU_INTERNAL static void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &L->main_stack_bottom, &L->main_stack_size);
#endif
    L->thunk(L->args);
#if EMU_TSAN
    __tsan_release(L->launch_token);
#endif
    L->cur->state = DONE;
    to_scheduler();
    __builtin_trap();  // a finished fiber is never resumed
}

// Resume fiber f from the scheduler (the host's writes happen-before the thread's reads).
EMU_INTERNAL static void resume(Fiber* f) {
    L->cur = f;
#if EMU_TSAN
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&L->asan_fake, f->stack, f->stack_size);
#endif
    emu_switch(&L->sched_sp, f->sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(L->asan_fake, nullptr, nullptr);
#endif
    L->cur = nullptr;
}

EMU_INTERNAL static void init_fiber(Fiber* f) {
    // Initial frame, popped by emu_switch: r15 r14 r13 r12 rbx rbp, return address, pad.
    uintptr_t top = ((uintptr_t)(f->stack + f->stack_size)) & ~(uintptr_t)15;
    void** sp = (void**)(top - 64);
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    sp[6] = (void*)&fiber_main;
    sp[7] = nullptr;
    f->sp = sp;
}

EMU_INTERNAL static bool warp_lane_exists(const Fiber* f, unsigned lane) {
    return f->warp * 32 + lane < L->nthreads;
}

// All lanes of f's mask have arrived at a warp op: check them, compute every lane's result, run.
EMU_INTERNAL static void try_release_warp(Fiber* f) {
    Fiber* base = &L->fibers[f->warp * 32];
    for (unsigned lane = 0; lane < 32; ++lane) {
        if (!(f->mask >> lane & 1u)) continue;
        Fiber* g = base + lane;
        if (g->state != AT_WARP) return;  // not everyone yet
        if (g->mask != f->mask || g->op != f->op) {
            fail("warp %u: lane %u called a warp function (op %d, mask 0x%08x, line %d) while lane "
                 "%u called op %d with mask 0x%08x (line %d): all lanes of a mask must make the "
                 "same call", f->warp, f->lane, f->op, f->mask, f->line, lane, g->op, g->mask,
                 g->line);
            return;
        }
    }
    for (unsigned lane = 0; lane < 32; ++lane) {
        if (!(f->mask >> lane & 1u)) continue;
        Fiber* g = base + lane;
        int w = g->width, seg = (int)lane / w * w, idx = (int)lane - seg, src = -1;
        switch (g->op) {
            case OP_SHFL: src = seg + ((g->src % w) + w) % w; break;
            case OP_SHFL_UP: src = idx - g->src >= 0 ? (int)lane - g->src : (int)lane; break;
            case OP_SHFL_DOWN: src = idx + g->src < w ? (int)lane + g->src : (int)lane; break;
            case OP_SHFL_XOR: src = seg + ((idx ^ g->src) < w ? (idx ^ g->src) : idx); break;
            default: src = (int)lane;
        }
        // Reading a lane outside the mask is undefined in CUDA: poison it.
        g->result = (f->mask >> src & 1u) ? base[src].value : ~(uint64_t)0;
    }
    for (unsigned lane = 0; lane < 32; ++lane)
        if (f->mask >> lane & 1u) base[lane].state = RUNNABLE;
}

EMU_INTERNAL static uint64_t warp_op(int op, unsigned mask, uint64_t value, int src, int width,
                                     int line) {
    Fiber* f = L->cur;
    if (L->failed) { to_scheduler(); }
    if (!(mask >> f->lane & 1u))
        fail("line %d: thread %u (warp %u lane %u) calls a warp function with mask 0x%08x that "
             "does not contain its own lane", line, f->linear, f->warp, f->lane, mask);
    for (unsigned lane = 0; lane < 32; ++lane)
        if ((mask >> lane & 1u) && !warp_lane_exists(f, lane))
            fail("line %d: mask 0x%08x names lane %u of warp %u, which does not exist (block of %u "
                 "threads)", line, mask, lane, f->warp, L->nthreads);
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fail("line %d: shuffle width %d is not a power of two <= 32", line, width);
    f->state = AT_WARP;
    f->op = op;
    f->mask = mask;
    f->value = value;
    f->src = src;
    f->width = width;
    f->line = line;
#if EMU_TSAN
    if (op == OP_SYNCWARP) __tsan_release(L->warp_tokens[f->warp]);  // __syncwarp orders memory
#endif
    if (!L->failed) try_release_warp(f);
    to_scheduler();
#if EMU_TSAN
    if (op == OP_SYNCWARP) __tsan_acquire(L->warp_tokens[f->warp]);
#endif
    return f->result;
}

EMU_INTERNAL static void syncthreads(int line) {
    Fiber* f = L->cur;
    f->state = AT_BARRIER;
    f->line = line;
#if EMU_TSAN
    __tsan_release(L->block_token);
#endif
    to_scheduler();
#if EMU_TSAN
    __tsan_acquire(L->block_token);
#endif
}

template <typename T>
static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles of at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
static inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

}  // namespace emu

extern "C" char __start_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_emu_shared[] __attribute__((weak, visibility("hidden")));

// ---- CUDA device API ---------------------------------------------------------------------------
#define __syncthreads() emu::syncthreads(__LINE__)
#define __syncwarp(...) emu_syncwarp(__LINE__, ##__VA_ARGS__)
static inline void emu_syncwarp(int line, unsigned mask = 0xffffffffu) {
    emu::warp_op(emu::OP_SYNCWARP, mask, 0, 0, 32, line);
}

template <typename T>
static inline T emu_shfl(int op, int line, unsigned mask, T v, int src, int width = 32) {
    return emu::from_bits<T>(emu::warp_op(op, mask, emu::to_bits(v), src, width, line));
}
#define __shfl_sync(mask, v, ...) emu_shfl(emu::OP_SHFL, __LINE__, mask, v, __VA_ARGS__)
#define __shfl_up_sync(mask, v, ...) emu_shfl(emu::OP_SHFL_UP, __LINE__, mask, v, __VA_ARGS__)
#define __shfl_down_sync(mask, v, ...) emu_shfl(emu::OP_SHFL_DOWN, __LINE__, mask, v, __VA_ARGS__)
#define __shfl_xor_sync(mask, v, ...) emu_shfl(emu::OP_SHFL_XOR, __LINE__, mask, v, __VA_ARGS__)

// Atomics: real atomic read-modify-writes (ThreadSanitizer sees them as synchronized).
static inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
template <typename T>
static inline T emu_atomic_add_float(T* p, T v) {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T desired = old + v;
    while (!__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED))
        desired = old + v;
    return old;
}
static inline float atomicAdd(float* p, float v) { return emu_atomic_add_float(p, v); }
static inline double atomicAdd(double* p, double v) { return emu_atomic_add_float(p, v); }

static inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {}
    return old;
}
static inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline int atomicCAS(int* p, int compare, int v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}

// Read-only loads and bit tricks.
template <typename T>
static inline T __ldg(const T* p) { return *p; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }

// Math: the C library stands in for CUDA's device math (intrinsics map to the exact functions).
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
#define __expf expf
#define __logf logf
static inline float __fdividef(float a, float b) { return a / b; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline long long __double_as_longlong(double d) { long long v; memcpy(&v, &d, 8); return v; }
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
using std::isinf;
using std::isnan;
using std::isfinite;

// ---- the launcher (called from Python through ctypes) ------------------------------------------
namespace emu {

#if EMU_TSAN
static thread_local volatile char emu_tls_touch;
#endif

struct BlockJob {
    Launch* launch;
    unsigned bx, by, bz;
    int order;
    std::mt19937_64* rng;
    char* stacks;
    size_t stack_size;
    volatile int finished;
};

// Run every thread of one block to its end (or to the first error).
EMU_INTERNAL static void run_block(BlockJob* job) {
    Launch& launch = *job->launch;
    L = &launch;
    const unsigned n = launch.nthreads, bx_ = job->bx, by_ = job->by, bz_ = job->bz;
    const dim3 b = launch.block;
    launch.block_idx = uint3{bx_, by_, bz_};
#if EMU_TSAN
    // The scheduler's own bookkeeping is invisible to TSan; the kernel's threads are not.
    __tsan_ignore_thread_begin();
    emu_tls_touch = 1;  // allocate this module's thread-local block (the shared memory) now
    launch.tsan_main = __tsan_get_current_fiber();
    launch.block_token = (char*)malloc(1);
    for (auto& t : launch.warp_tokens) t = (char*)malloc(1);
#else
    // Poison the block's shared memory: NaN for float/double, -1 for integers.
    volatile char* sh = __start_emu_shared;
    for (size_t i = 0, e = (size_t)(__stop_emu_shared - __start_emu_shared); i < e; ++i)
        sh[i] = (char)0xFF;
#endif
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = launch.fibers[i];
        f = Fiber();
        f.linear = i;
        f.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
        f.lane = i % 32;
        f.warp = i / 32;
        f.stack = job->stacks + (size_t)i * job->stack_size;
        f.stack_size = job->stack_size;
        f.state = RUNNABLE;
        init_fiber(&f);
#if EMU_TSAN
        f.tsan_fiber = __tsan_create_fiber(0);
#endif
    }
    std::vector<unsigned> perm(n);
    for (unsigned i = 0; i < n; ++i) perm[i] = job->order == 1 ? n - 1 - i : i;
    while (!launch.failed) {
        if (job->order == 2) std::shuffle(perm.begin(), perm.end(), *job->rng);
        bool ran = false;
        for (unsigned k = 0; k < n && !launch.failed; ++k) {
            Fiber* f = &launch.fibers[perm[k]];
            if (f->state != RUNNABLE) continue;
            ran = true;
            resume(f);
        }
        if (ran || launch.failed) continue;
        // Nobody can run: everyone is done, a block barrier is complete, or it is an error.
        unsigned done = 0, at_warp = 0, first_barrier = n, first_warp = n, first_done = n;
        for (unsigned i = 0; i < n; ++i) {
            State s = launch.fibers[i].state;
            if (s == DONE) { ++done; if (first_done == n) first_done = i; }
            if (s == AT_BARRIER && first_barrier == n) first_barrier = i;
            if (s == AT_WARP) { ++at_warp; if (first_warp == n) first_warp = i; }
        }
        if (done == n) break;
        if (at_warp) {
            Fiber& w = launch.fibers[first_warp];
            fail("deadlock: thread %u waits at a warp function (line %d, mask 0x%08x) that some "
                 "lane of its mask never reaches (it exited or waits at a __syncthreads)",
                 w.linear, w.line, w.mask);
            break;
        }
        if (done) {
            fail("barrier divergence: thread %u exited while thread %u waits at __syncthreads "
                 "(line %d); every thread of a block must reach every barrier", first_done,
                 first_barrier, launch.fibers[first_barrier].line);
            break;
        }
        const int line = launch.fibers[first_barrier].line;
        for (unsigned i = 0; i < n && !launch.failed; ++i)
            if (launch.fibers[i].line != line)
                fail("barrier divergence: thread %u waits at the __syncthreads of line %d, "
                     "thread %u at the one of line %d", first_barrier, line, i,
                     launch.fibers[i].line);
        for (unsigned i = 0; i < n; ++i) launch.fibers[i].state = RUNNABLE;
    }
#if EMU_TSAN
    // The TSan fibers stay alive to the end of the launch: a destroyed fiber's slot is reused,
    // and TSan then takes the old fiber's accesses as ordered before the new one's.
    for (unsigned i = 0; i < n; ++i) launch.dead_fibers.push_back(launch.fibers[i].tsan_fiber);
    free(launch.block_token);
    for (auto& t : launch.warp_tokens) free(t);
    __tsan_ignore_thread_end();
#endif
    if (launch.failed) {
        size_t len = strlen(launch.error);
        snprintf(launch.error + len, sizeof launch.error - len, " [block (%u,%u,%u)]", bx_, by_,
                 bz_);
    }
}

#if EMU_TSAN
// A block on its own OS thread. The host waits on a flag that ThreadSanitizer does not see, so
// no happens-before joins two blocks (a join would hide every cross-block race).
EMU_INTERNAL static void* block_thread(void* arg) {
    BlockJob* job = (BlockJob*)arg;
    run_block(job);
    __atomic_store_n(&job->finished, 1, __ATOMIC_RELAXED);
    return nullptr;
}
#endif

}  // namespace emu

// order: 0 forward, 1 reverse, 2 random (seeded). Returns 0, or 1 with a message in err.
extern "C" EMU_INTERNAL int emu_launch(void (*thunk)(void**), void** args, unsigned gx,
                                       unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                       unsigned bz, int order, unsigned long long seed, char* err,
                                       int errlen) {
    using namespace emu;
#if EMU_TSAN
    __tsan_ignore_thread_begin();
    struct EndIgnore { ~EndIgnore() { __tsan_ignore_thread_end(); } } end_ignore;
#endif
    Launch launch;
    launch.thunk = thunk;
    launch.args = args;
    launch.grid = dim3(gx, gy, gz);
    launch.block = dim3(bx, by, bz);
    const unsigned n = bx * by * bz;
    launch.nthreads = n;
    launch.fibers.resize(n);
#if EMU_ASAN
    const size_t stack_size = 1 << 17;
#elif EMU_TSAN
    const size_t stack_size = 1 << 16;   // TSan resets the shadow of every new stack: keep it small
#else
    const size_t stack_size = 1 << 16;
#endif
    std::mt19937_64 rng(seed);
#if EMU_TSAN
    launch.tsan_main = nullptr;
    launch.launch_token = (char*)malloc(1);
    launch.warp_tokens.resize((n + 31) / 32);
#endif
#if !EMU_ASAN && !EMU_TSAN
    // Plain builds keep one pool of fiber stacks for every block and launch (mapping and first
    // touching fresh stacks per block cost more than most kernels). Sanitizer builds map fresh
    // stacks per block: their shadow must start clean.
    static char* pool = nullptr;
    static size_t pool_threads = 0;
    if (pool_threads < n) {
        if (pool) munmap(pool, stack_size * pool_threads);
        pool = (char*)mmap(nullptr, stack_size * n, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (pool == MAP_FAILED) {
            pool = nullptr;
            pool_threads = 0;
            snprintf(err, errlen, "cannot map fiber stacks");
            return 1;
        }
        pool_threads = n;
    }
#endif
    for (unsigned z = 0; z < gz && !launch.failed; ++z)
    for (unsigned y = 0; y < gy && !launch.failed; ++y)
    for (unsigned x = 0; x < gx && !launch.failed; ++x) {
#if EMU_ASAN || EMU_TSAN
        char* stacks = (char*)mmap(nullptr, stack_size * n, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (stacks == MAP_FAILED) { snprintf(err, errlen, "cannot map fiber stacks"); return 1; }
#else
        char* stacks = pool;
#endif
        BlockJob job{&launch, x, y, z, order, &rng, stacks, stack_size, 0};
#if EMU_TSAN
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, block_thread, &job) != 0) {
            snprintf(err, errlen, "cannot start a block thread");
            return 1;
        }
        pthread_attr_destroy(&attr);
        while (!__atomic_load_n(&job.finished, __ATOMIC_RELAXED)) sched_yield();
#else
        run_block(&job);
#endif
#if EMU_ASAN || EMU_TSAN
        munmap(stacks, stack_size * n);
#endif
    }
#if EMU_TSAN
    __tsan_acquire(launch.launch_token);  // the host reads what every thread wrote
    free(launch.launch_token);
    for (void* f : launch.dead_fibers) __tsan_destroy_fiber(f);
#endif
    L = nullptr;
    if (launch.failed) {
        snprintf(err, errlen, "%s", launch.error);
        return 1;
    }
    return 0;
}
