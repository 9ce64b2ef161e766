"""The tools that check tinygen's CUDA code without a GPU, and proof that they catch bugs.

* every ``kernels/cuda/*.cu`` compiles with NVRTC, with ``nvcc --ptx -arch=sm_90`` and with g++ for
  the CPU emulator (skipped, with the reason, where a compiler is missing);
* the emulator: thread orders, NaN-poisoned shared memory, guard bytes, barrier divergence,
  warp-mask errors and deadlocks are reported;
* planted bugs caught: a missing ``__syncthreads`` (by the thread orders), an out-of-bounds
  write (guard bytes) and read (AddressSanitizer), a missing ``atomicAdd`` (ThreadSanitizer only:
  every order gets the right sum), a launch with the wrong block size;
* the stand-in ``cupy`` keeps CuPy's rules (no silent conversion to NumPy, exact argument types);
  outside the tests ``device="cuda"`` without a GPU stays a clear error;
* sanitizer runs (ASan + UBSan, TSan) of the kernel-family tests on small launches, in the
  ``make test-gpu-emu`` leg (``TINYGEN_TEST_DEVICE=cuda-emu``) or with
  ``TINYGEN_SANITIZER_TESTS=1``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cuda_emu
from cuda_emu import EmuError, EmuModule, fake_cupy

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CU_DIR = ROOT / "kernels" / "cuda"
CU_FILES = sorted(p.name for p in CU_DIR.glob("*.cu"))

needs_gxx = pytest.mark.skipif(cuda_emu.gxx() is None, reason="g++ is not on PATH")


def _sanitizer_runtime(name):
    """Path of libasan.so / libubsan.so / libtsan.so as g++ reports it, or None."""
    if cuda_emu.gxx() is None:
        return None
    out = subprocess.run([cuda_emu.gxx(), f"-print-file-name={name}"], capture_output=True,
                         text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def sanitizer_env(mode):
    """Environment for a python subprocess running sanitizer builds (LD_PRELOAD of the runtime
    into the real python binary), or None when the runtime is missing."""
    libs = ["libasan.so", "libubsan.so"] if mode == "address" else ["libtsan.so"]
    paths = [_sanitizer_runtime(lib) for lib in libs]
    if not all(paths):
        return None
    env = dict(os.environ, TINYGEN_EMU_SANITIZE=mode, LD_PRELOAD=" ".join(paths),
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
               TSAN_OPTIONS="halt_on_error=1:report_signal_unsafe=0",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    env.pop("TINYGEN_TEST_DEVICE", None)
    return env


def run_python(code, env, timeout=600):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def module(code):
    return EmuModule(f'#line 1 "planted.cu"\n{textwrap.dedent(code)}')


@pytest.fixture
def order():
    saved = cuda_emu.get_order()
    yield cuda_emu.set_order
    cuda_emu.set_order(*saved)


# -- every .cu compiles with every compiler -------------------------------------------------------
_NVRTC_SCRIPT = """
import json, sys
from cupy.cuda import nvrtc
out = {}
for path in sys.argv[1:]:
    src = open(path).read()
    prog = nvrtc.createProgram(src, path, [], [])
    try:
        nvrtc.compileProgram(prog, ["--gpu-architecture=compute_90", "-std=c++17"])
        out[path] = [True, nvrtc.getProgramLog(prog)]
    except Exception as exc:
        out[path] = [False, f"{exc}\\n{nvrtc.getProgramLog(prog)}"]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def nvrtc_results():
    """NVRTC run in a subprocess with the real cupy (the run may have the stand-in installed)."""
    env = dict(os.environ)
    env.pop("TINYGEN_TEST_DEVICE", None)
    probe = subprocess.run([sys.executable, "-c",
                            "from cupy.cuda import nvrtc; nvrtc.getVersion()"],
                           capture_output=True, text=True, env=env)
    if probe.returncode:
        pytest.skip("CuPy's NVRTC is not installed (pip install cupy-cuda13x "
                    f"nvidia-cuda-nvrtc): {probe.stderr.strip().splitlines()[-1][:200]}")
    proc = subprocess.run([sys.executable, "-c", _NVRTC_SCRIPT, *map(str, CU_DIR.glob("*.cu"))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {Path(k).name: v for k, v in json.loads(proc.stdout).items()}


@pytest.mark.parametrize("cu", CU_FILES)
def test_compiles_with_nvrtc(cu, nvrtc_results):
    ok, log = nvrtc_results[cu]
    assert ok, f"NVRTC rejected {cu}:\n{log}"
    assert "warning" not in log.lower(), f"NVRTC warns about {cu}:\n{log}"


@pytest.mark.parametrize("cu", CU_FILES)
def test_compiles_with_nvcc_ptx(cu, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    proc = subprocess.run([nvcc, "--ptx", "-arch=sm_90", "-std=c++17", str(CU_DIR / cu), "-o",
                           str(tmp_path / "out.ptx")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"nvcc rejected {cu}:\n{proc.stderr}"
    assert ".entry" in (tmp_path / "out.ptx").read_text()


@needs_gxx
@pytest.mark.parametrize("cu", CU_FILES)
def test_compiles_for_the_emulator_with_both_precisions(cu):
    from tinygen.kernels.cuda import _runtime
    lib = cuda_emu.compile_source(_runtime.source(cu), path_hint=cu)
    names = set(lib.kernels)
    assert names, f"no extern \"C\" __global__ kernel found in {cu}"
    for name in names:
        base = name.rsplit("_", 1)[0]
        assert name.endswith(("_f32", "_f64")) and {base + "_f32", base + "_f64"} <= names, \
            f"{cu}: kernel {name} lacks its float32/float64 twin"


def test_runtime_source_points_compiler_errors_at_the_file():
    from tinygen.kernels.cuda import _runtime
    text = _runtime.source("reduce.cu")
    assert text.startswith(f'#line 1 "{CU_DIR / "reduce.cu"}"\n')
    assert _runtime.source("reduce.cu") is text             # read once
    with pytest.raises(ValueError, match=r"\.cu file"):
        _runtime.source("../cuda/nothing.cu")


# -- the emulator ---------------------------------------------------------------------------------
ORDER_PROBE = """
extern "C" __global__ void arrival(int* counter, int* order_of) {
    order_of[threadIdx.x] = atomicAdd(counter, 1);
}
"""


@needs_gxx
def test_thread_orders_are_forward_reverse_and_seeded_random(order):
    k = module(ORDER_PROBE).get_function("arrival")
    seen = {}
    for name, seed in (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)):
        order(name, seed)
        counter, order_of = np.zeros(1, np.int32), np.zeros(64, np.int32)
        k((1,), (64,), (counter, order_of))
        seen[name, seed] = order_of.copy()
    assert (seen["forward", 0] == np.arange(64)).all()
    assert (seen["reverse", 0] == np.arange(64)[::-1]).all()
    assert sorted(seen["random", 1]) == list(range(64))
    assert not (seen["random", 1] == seen["random", 2]).all()


@needs_gxx
def test_shared_memory_is_poisoned_at_every_block_start():
    k = module("""
        extern "C" __global__ void read_first(float* out) {
            __shared__ float buf[32];
            out[blockIdx.x * 32 + threadIdx.x] = buf[threadIdx.x];   // never written
            buf[threadIdx.x] = 1.0f;
        }""").get_function("read_first")
    out = np.zeros(64, np.float32)
    k((2,), (32,), (out,))
    assert np.isnan(out).all()      # block 1 sees poison again, not block 0's ones


BARRIER_RETURN = """
extern "C" __global__ void early_exit(float* x, int n) {
    __shared__ float buf[64];
    if ((int)threadIdx.x >= n) return;          // the bug: an exit before a barrier
    buf[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    x[threadIdx.x] = buf[(threadIdx.x + 1) % n];
}
"""


@needs_gxx
def test_barrier_divergence_is_an_error():
    k = module(BARRIER_RETURN).get_function("early_exit")
    x = np.arange(64, dtype=np.float32)
    k((1,), (64,), (x, np.int32(64)))             # every thread reaches the barrier: fine
    with pytest.raises(EmuError, match="barrier divergence"):
        k((1,), (64,), (x, np.int32(40)))
    k2 = module("""
        extern "C" __global__ void two_barriers(float* x) {
            if (threadIdx.x < 16) {
                __syncthreads();
            } else {
                __syncthreads();
            }
            x[threadIdx.x] = 0.0f;
        }""").get_function("two_barriers")
    with pytest.raises(EmuError, match="barrier divergence.*line 4.*line 6"):
        k2((1,), (32,), (np.zeros(32, np.float32),))


@needs_gxx
def test_warp_mask_errors_and_deadlock():
    mod = module("""
        extern "C" __global__ void half_mask(float* x) {
            x[threadIdx.x] = __shfl_down_sync(0x0000ffffu, x[threadIdx.x], 1);
        }
        extern "C" __global__ void lane_exits(float* x) {
            if (threadIdx.x == 5) return;
            x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1);
        }
        extern "C" __global__ void ok_shuffles(float* x) {
            float v = x[threadIdx.x];
            float down = __shfl_down_sync(0xffffffffu, v, 3);
            float up = __shfl_up_sync(0xffffffffu, v, 2);
            float xr = __shfl_xor_sync(0xffffffffu, v, 5);
            float bc = __shfl_sync(0xffffffffu, v, 7, 16);
            __syncwarp();
            x[threadIdx.x] = down + 32.0f * up + 1024.0f * xr + 32768.0f * bc;   // exact
        }""")
    x = np.arange(32, dtype=np.float32)
    with pytest.raises(EmuError, match="does not contain its own lane"):
        mod.get_function("half_mask")((1,), (32,), (x.copy(),))
    with pytest.raises(EmuError, match="deadlock"):
        mod.get_function("lane_exits")((1,), (32,), (x.copy(),))
    y = x.copy()
    mod.get_function("ok_shuffles")((1,), (32,), (y,))
    lane = np.arange(32)
    down = np.where(lane + 3 < 32, lane + 3, lane)
    up = np.where(lane - 2 >= 0, lane - 2, lane)
    bc = lane // 16 * 16 + 7
    np.testing.assert_array_equal(y, down + 32.0 * up + 1024.0 * (lane ^ 5) + 32768.0 * bc)


# -- planted bugs ---------------------------------------------------------------------------------
TREE_SUM = """
#define BARRIER_AFTER_LOAD {barrier}
extern "C" __global__ void tree_sum(const float* x, float* out, int n) {{
    __shared__ float buf[256];
    const int i = blockIdx.x * 256 + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.0f;
    BARRIER_AFTER_LOAD
    for (int s = 128; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }}
    if (threadIdx.x == 0) atomicAdd(out, buf[0]);
}}
"""


def _tree_sums(barrier, order):
    k = module(TREE_SUM.format(barrier=barrier)).get_function("tree_sum")
    x = np.arange(1000, dtype=np.float32) % 7
    sums = {}
    for name in ("forward", "reverse", "random"):
        order(name, 3)
        out = np.zeros(1, np.float32)
        k((4,), (256,), (x, out, np.int32(x.size)))
        sums[name] = float(out[0])
    return sums, float(x.sum())


@needs_gxx
def test_planted_missing_syncthreads_is_caught_by_the_thread_orders(order):
    sums, want = _tree_sums("__syncthreads();", order)
    assert sums == {"forward": want, "reverse": want, "random": want}
    sums, want = _tree_sums("", order)
    wrong = [name for name, s in sums.items() if s != want]
    assert "forward" in wrong and "random" in wrong, sums
    # (the reverse order happens to be right: thread 0 loads last, after all others -- hence
    # several orders)


OOB = """
extern "C" __global__ void shift(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 2.0f * x[i];             // the bug: <= writes y[n] (and reads x[n])
}
"""


@needs_gxx
def test_planted_out_of_bounds_write_is_caught_by_the_guard_bytes():
    k = module(OOB).get_function("shift")
    x, y = np.ones(64, np.float32), np.zeros(64, np.float32)
    k((1,), (64,), (x, y, np.int32(64)))          # 64 threads: i <= 63, nothing out of bounds
    with pytest.raises(EmuError, match="out-of-bounds write"):
        k((2,), (64,), (x, y, np.int32(64)))
    with pytest.raises(EmuError, match="out-of-bounds write"):
        fake_cupy.RawKernel(f'#line 1 "oob.cu"\n{OOB}', "shift")(
            (2,), (64,), (fake_cupy.ones(64, np.float32), fake_cupy.zeros(64, np.float32),
                          np.int32(64)))


_LAUNCH_PLANTED = """
import sys
import numpy as np
import cuda_emu
src = open(sys.argv[1]).read()
k = cuda_emu.EmuModule('#line 1 "planted.cu"\\n' + src).get_function(sys.argv[2])
x = np.arange(64, dtype=np.float32)
out = np.zeros({out_size}, np.float32)
k(({blocks},), ({threads},), (x, out, np.int32(x.size)))
print("RESULT", float(out.sum()), float(x.sum()) if {out_size} == 1 else 2 * float(x[:63].sum()))
"""


def _run_planted(mode, src, kernel, tmp_path, blocks, threads, out_size):
    env = sanitizer_env(mode)
    if env is None:
        pytest.skip(f"the {mode} sanitizer runtime is not installed for g++")
    path = tmp_path / "planted.cu"
    path.write_text(src)
    script = _LAUNCH_PLANTED.format(out_size=out_size, blocks=blocks, threads=threads)
    return subprocess.run([sys.executable, "-c", script, str(path), kernel], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@needs_gxx
def test_planted_out_of_bounds_read_is_caught_by_address_sanitizer(tmp_path):
    good = OOB.replace("i <= n", "i < n")
    proc = _run_planted("address", good, "shift", tmp_path, 2, 64, 64)
    assert proc.returncode == 0 and "ERROR: AddressSanitizer" not in proc.stderr, proc.stderr
    proc = _run_planted("address", OOB, "shift", tmp_path, 2, 64, 64)
    assert proc.returncode != 0 and "heap-buffer-overflow" in proc.stderr, proc.stderr[-3000:]


CROSS_BLOCK = """
extern "C" __global__ void total(const float* x, float* out, int n) {{
    __shared__ float part[32];
    const int i = blockIdx.x * 32 + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    if (threadIdx.x == 0) {add};
}}
"""


@needs_gxx
def test_planted_missing_atomic_add_is_caught_by_thread_sanitizer_only(tmp_path, order):
    racy = CROSS_BLOCK.format(add="*out += part[0]")
    k = module(racy).get_function("total")
    x = np.arange(64, dtype=np.float32)
    for name in ("forward", "reverse", "random"):     # blocks run one after another: right
        order(name, 5)
        out = np.zeros(1, np.float32)
        k((2,), (32,), (x, out, np.int32(64)))
        assert out[0] == x.sum()
    good = CROSS_BLOCK.format(add="atomicAdd(out, part[0])")
    proc = _run_planted("thread", good, "total", tmp_path, 2, 32, 1)
    assert proc.returncode == 0 and "ThreadSanitizer" not in proc.stderr, proc.stderr[-3000:]
    assert "RESULT 2016.0 2016.0" in proc.stdout
    proc = _run_planted("thread", racy, "total", tmp_path, 2, 32, 1)
    assert proc.returncode != 0 and "WARNING: ThreadSanitizer: data race" in proc.stderr, \
        proc.stdout + proc.stderr[-3000:]


@needs_gxx
def test_planted_wrong_block_size_is_caught():
    from tinygen.kernels.cuda import _runtime
    k = EmuModule(_runtime.source("reduce.cu")).get_function("reduce_sum_f32")
    x = np.ones((2, 100), np.float32)
    out = np.zeros(2, np.float32)
    k((2,), (256,), (x, out, np.int32(100), np.int32(1)))
    np.testing.assert_array_equal(out, [100.0, 100.0])
    with pytest.raises(EmuError, match="does not exist"):   # 48 threads: a half warp
        k((2,), (48,), (x, out, np.int32(100), np.int32(1)))
    with pytest.raises(EmuError, match="exceeds CUDA's limits"):
        k((2,), (2048,), (x, out, np.int32(100), np.int32(1)))


# -- the stand-in cupy and the launch checks ------------------------------------------------------
def test_stand_in_keeps_cupys_conversion_rules():
    cp = fake_cupy
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.exp(np.ones(3))
    assert isinstance(x.sum(), cp.ndarray) and x.sum().ndim == 0      # 0-d device array
    assert isinstance(np.exp(x), cp.ndarray)                          # NumPy defers to it
    assert np.isnan(cp.empty((3,), np.float32).get()).all()           # GPU memory is garbage
    host = np.ones(3)
    dev = cp.asarray(host)
    dev += 1
    assert host[0] == 1.0                                             # a copy, not a view
    np.testing.assert_array_equal(cp.asnumpy(cp.matmul(x, x.T)), x.get() @ x.get().T)


@needs_gxx
def test_kernel_arguments_are_checked_exactly():
    k = module(ORDER_PROBE.replace("int* order_of", "float* order_of, float scale, int n")
               ).get_function("arrival")
    counter, order_of = np.zeros(1, np.int32), np.zeros(8, np.float32)
    k((1,), (8,), (counter, order_of, np.float32(1.0), np.int32(8)))
    with pytest.raises(TypeError, match=r"needs np\.float32, got float"):
        k((1,), (8,), (counter, order_of, 1.0, np.int32(8)))
    with pytest.raises(TypeError, match=r"needs np\.int32, got int"):
        k((1,), (8,), (counter, order_of, np.float32(1.0), 8))
    with pytest.raises(TypeError, match="needs a float32 array, got float64"):
        k((1,), (8,), (counter, order_of.astype(np.float64), np.float32(1.0), np.int32(8)))
    with pytest.raises(TypeError, match="not C-contiguous"):
        k((1,), (8,), (counter, np.zeros(16, np.float32)[::2], np.float32(1.0), np.int32(8)))
    with pytest.raises(TypeError, match="takes 4 arguments"):
        k((1,), (8,), (counter, order_of))


def test_runtime_launch_refuses_python_scalars(monkeypatch):
    from tinygen.kernels.cuda import _runtime
    monkeypatch.setattr(_runtime, "_cupy", fake_cupy)
    monkeypatch.setattr(_runtime, "_cupy_error", None)
    x = fake_cupy.zeros(4, np.float32)
    for bad, kind in ((1.5, "float"), (3, "int"), (np.int16(3), "int16")):
        with pytest.raises(TypeError, match=f"argument 1 is {kind}"):
            _runtime.launch("losses.cu", "bce_with_logits_forward_f32", (1,), (32,), (x, bad))
    with pytest.raises(TypeError, match="NumPy array"):
        _runtime.launch("losses.cu", "bce_with_logits_forward_f32", (1,), (32,), (np.zeros(4),))
    with pytest.raises(TypeError, match="float32 or float64"):
        _runtime.variant("reduce_sum", np.int32)


def test_device_cuda_without_a_gpu_stays_a_clear_error_outside_the_tests():
    env = dict(os.environ)
    env.pop("TINYGEN_TEST_DEVICE", None)
    env.pop("PYTHONPATH", None)
    proc = run_python("""
        import tinygen
        from tinygen.kernels.cuda import _runtime
        try:
            _runtime.get_cupy()
        except RuntimeError:
            pass
        else:
            print("GPU PRESENT")
            raise SystemExit(0)
        assert "cuda_emu" not in str(_runtime._cupy)
        try:
            tinygen.tensor([1.0], device="cuda")
        except RuntimeError as exc:
            print("REFUSED", exc)
    """, env)
    if "GPU PRESENT" in proc.stdout:
        pytest.skip("a real GPU is present")
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED" in proc.stdout and "needs CuPy and a CUDA GPU" in proc.stdout, proc.stdout


# -- sanitizer runs of the kernel families --------------------------------------------------------
_RUN_SANITIZERS = os.environ.get("TINYGEN_TEST_DEVICE") == "cuda-emu" or \
    os.environ.get("TINYGEN_SANITIZER_TESTS") == "1"
KERNEL_TEST_FILES = [f for f in ("test_cuda_kernels.py", "test_cuda_conv.py", "test_cuda_lstm.py")
                     if (TESTS / f).exists()]


@needs_gxx
@pytest.mark.skipif(not _RUN_SANITIZERS, reason="sanitizer runs take minutes: they run in "
                    "make test-gpu-emu (or set TINYGEN_SANITIZER_TESTS=1)")
@pytest.mark.parametrize("mode,select", [("address", "forward and float32"),
                                         ("thread", "forward and float32")])
def test_kernel_families_are_clean_under_sanitizers(mode, select):
    env = sanitizer_env(mode)
    if env is None:
        pytest.skip(f"the {mode} sanitizer runtime is not installed for g++")
    env["HYPOTHESIS_PROFILE"] = "ci"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           "-k", select, *[str(TESTS / f) for f in KERNEL_TEST_FILES]],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    report = proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.returncode == 0, report
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, report
    assert " passed" in proc.stdout, report
