"""The CUDA convolution kernels (kernels/cuda/conv.cu + conv.py) against the CPU kernels.

Run on the CPU emulator of tests/cuda_emu (or a real GPU when one is present, see
tests/_cuda_device.py): the three drivers (conv, transposed conv, weight gradient) in float32 and
float64 over hypothesis-drawn geometries (stride, padding, dilation, groups, output_padding), in
three thread orders; col2im's adjointness to im2col and its order-independence (a gather, no
atomics); batch chunking; argument errors.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _cuda_device import ORDERS, device_cupy, thread_order
from tinygen.kernels import geometry
from tinygen.kernels.cpu import conv as cpu_conv

DTYPES = (np.float32, np.float64)


def _tol(dtype, *arrays):
    """(rtol, atol) for comparing a GPU result with the CPU one: atol scales with the data."""
    mag = max([1.0] + [float(np.abs(a).max()) for a in arrays if a.size])
    if dtype == np.float64:
        return 1e-12, 1e-12 * mag
    return 2e-5, 2e-5 * mag


@st.composite
def conv_cases(draw, transposed=False):
    """(N, groups, C/groups, O/groups, geometry, seed) of a small 2-D convolution."""
    groups = draw(st.integers(1, 3))
    cg, og, n = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    if not transposed and draw(st.integers(0, 4)) == 0:
        stride, padding = (1, 1), "same"          # asymmetric padding when the extent is even
    try:
        if transposed:
            spatial = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))   # the conv^T's input
            output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                                   for s, d in zip(stride, dilation))
            geom = geometry.conv_transpose_geometry("conv_transpose2d", spatial, kernel, stride,
                                                    padding, output_padding, dilation)
        else:
            spatial = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
            geom = geometry.conv_geometry("conv2d", spatial, kernel, stride, padding, dilation)
    except ValueError:
        assume(False)
    return n, groups, cg, og, geom, draw(st.integers(0, 2 ** 32 - 1))


def _arrays(case, dtype):
    """x (N, C, H, W), w (O, C/groups, kh, kw), gy (N, O, OH, OW) for a case."""
    n, groups, cg, og, geom, seed = case
    gh, gw = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cg, gh.size_in, gw.size_in)).astype(dtype)
    w = rng.standard_normal((groups * og, cg, gh.kernel, gw.kernel)).astype(dtype)
    gy = rng.standard_normal((n, groups * og, gh.size_out, gw.size_out)).astype(dtype)
    return x, w, gy


def _check_all_drivers(case, dtype):
    """The three drivers on the device against the CPU kernels."""
    from tinygen.kernels.cuda import conv as cuda_conv
    n, groups, cg, og, geom, seed = case
    x, w, gy = _arrays(case, dtype)
    with device_cupy() as cp:
        dx, dw_, dgy = cp.asarray(x), cp.asarray(w), cp.asarray(gy)
        results = {
            "conv2d_forward": (cuda_conv.conv2d_forward(dx, dw_, geom, groups),
                               cpu_conv.conv2d_forward(x, w, geom, groups)),
            "conv2d_transpose_forward": (cuda_conv.conv2d_transpose_forward(dgy, dw_, geom, groups),
                                         cpu_conv.conv2d_transpose_forward(gy, w, geom, groups)),
            "conv2d_weight": (cuda_conv.conv2d_weight(dx, dgy, geom, groups, w.shape),
                              cpu_conv.conv2d_weight(x, gy, geom, groups, w.shape)),
        }
        for name, (dev, ref) in results.items():
            got = cp.asnumpy(dev)
            assert got.dtype == dtype and got.shape == ref.shape, (name, got.dtype, got.shape)
            rtol, atol = _tol(dtype, ref)
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=f"{name} {geom}")


@contextlib.contextmanager
def _algorithm(name):
    """Run the block with kernels.cuda.conv.ALGORITHM = ``name``."""
    from tinygen.kernels.cuda import conv as cuda_conv
    saved = cuda_conv.ALGORITHM
    cuda_conv.ALGORITHM = name
    try:
        yield
    finally:
        cuda_conv.ALGORITHM = saved


ALGORITHMS = ("im2col", "direct")   # kernels.cuda.conv.ALGORITHM: the ladder's two rungs


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("order", ORDERS)
@given(case=conv_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=12)
def test_conv_drivers_match_cpu(algorithm, order, case, dtype):
    with thread_order(order, seed=7), _algorithm(algorithm):
        _check_all_drivers(case, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("order", ORDERS)
@given(case=conv_cases(transposed=True), dtype=st.sampled_from(DTYPES))
@settings(max_examples=12)
def test_transposed_geometries_with_output_padding_match_cpu(algorithm, order, case, dtype):
    with thread_order(order, seed=11), _algorithm(algorithm):
        _check_all_drivers(case, dtype)


def test_a_bad_algorithm_is_a_clear_error():
    from tinygen.kernels.cuda import conv as cuda_conv
    geom = geometry.conv_geometry("conv2d", (4, 4), (3, 3), 1, 0, 1)
    with device_cupy() as cp, _algorithm("winograd"), pytest.raises(ValueError,
                                                                     match="ALGORITHM"):
        cuda_conv.conv2d_forward(cp.zeros((1, 1, 4, 4), dtype=np.float32),
                                 cp.zeros((1, 1, 3, 3), dtype=np.float32), geom, 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_lecture_autoencoder_layers_match_cpu(algorithm):
    """The strided layers of the lecture's conv autoencoder (C = 4 for speed), float32."""
    from tinygen.kernels.cuda import conv as cuda_conv
    rng = np.random.default_rng(0)
    layers = [(4, 4, 4, 2, 20), (4, 4, 3, 2, 9), (1, 4, 5, 1, 28)]   # C_in, C_out, k, stride, size
    with device_cupy() as cp, _algorithm(algorithm):
        for cin, cout, k, s, size in layers:
            geom = geometry.conv_geometry("conv2d", (size, size), (k, k), s, 0, 1)
            x = rng.standard_normal((2, cin, size, size)).astype(np.float32)
            w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
            y = cpu_conv.conv2d_forward(x, w, geom, 1)
            got = cp.asnumpy(cuda_conv.conv2d_forward(cp.asarray(x), cp.asarray(w), geom, 1))
            np.testing.assert_allclose(got, y, rtol=2e-5, atol=2e-5 * np.abs(y).max())
            back = cpu_conv.conv2d_transpose_forward(y, w, geom, 1)
            got = cp.asnumpy(cuda_conv.conv2d_transpose_forward(cp.asarray(y), cp.asarray(w),
                                                                geom, 1))
            np.testing.assert_allclose(got, back, rtol=2e-5, atol=2e-5 * np.abs(back).max())


@given(case=conv_cases())
@settings(max_examples=10)
def test_col2im_is_the_adjoint_of_im2col(case):
    """<im2col(x), c> = <x, col2im(c)> in float64, on the device alone."""
    from tinygen.kernels.cuda import conv as cuda_conv
    n, groups, cg, og, geom, seed = case
    gh, gw = geom
    rng = np.random.default_rng(seed)
    c_in = groups * cg
    x = rng.standard_normal((n, c_in, gh.size_in, gw.size_in))
    cols = rng.standard_normal((c_in * gh.kernel * gw.kernel, n, gh.size_out * gw.size_out))
    with device_cupy() as cp:
        dcols = cp.empty(cols.shape, dtype=np.float64)
        cuda_conv.im2col(cp.asarray(x), geom, dcols)
        dx = cp.empty(x.shape, dtype=np.float64)
        cuda_conv.col2im(cp.asarray(cols), geom, dx)
        lhs = float(np.sum(cp.asnumpy(dcols) * cols))
        rhs = float(np.sum(x * cp.asnumpy(dx)))
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs)), (lhs, rhs)


def test_col2im_gives_the_same_bits_in_every_thread_order():
    """col2im is a gather: each pixel's sum runs in a fixed order whatever the thread order."""
    from tinygen.kernels.cuda import conv as cuda_conv
    geom = geometry.conv_geometry("conv2d", (9, 8), (3, 3), (2, 1), (1, 2), (1, 2))
    rng = np.random.default_rng(3)
    cols = rng.standard_normal((2 * 9, 3, geom[0].size_out * geom[1].size_out)).astype(np.float32)
    results = []
    with device_cupy() as cp:
        for order in ORDERS:
            with thread_order(order, seed=5):
                x = cp.empty((3, 2, 9, 8), dtype=np.float32)
                cuda_conv.col2im(cp.asarray(cols), geom, x)
                results.append(cp.asnumpy(x))
    assert np.isfinite(results[0]).all()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_batch_chunks_give_the_same_result(monkeypatch):
    """A workspace too small for the batch: one sample per chunk, same results as the CPU."""
    from tinygen.kernels.cuda import conv as cuda_conv
    monkeypatch.setattr(cuda_conv, "WORKSPACE_BYTES", 1)
    case = (3, 2, 2, 1, geometry.conv_geometry("conv2d", (6, 5), (3, 2), (2, 1), (1, 0), (1, 2)),
            1234)
    for dtype in DTYPES:
        _check_all_drivers(case, dtype)


def test_non_contiguous_inputs_are_accepted():
    from tinygen.kernels.cuda import conv as cuda_conv
    geom = geometry.conv_geometry("conv2d", (5, 6), (3, 3), 1, 1, 1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 5)).transpose(0, 1, 3, 2)       # (2, 3, 5, 6), a view
    w = rng.standard_normal((4, 3, 3, 3))
    with device_cupy() as cp:
        got = cp.asnumpy(cuda_conv.conv2d_forward(cp.asarray(x), cp.asarray(w), geom, 1))
    np.testing.assert_allclose(got, cpu_conv.conv2d_forward(np.ascontiguousarray(x), w, geom, 1),
                               rtol=1e-12, atol=1e-12)


def test_bad_dtypes_are_refused_with_the_function_name():
    from tinygen.kernels.cuda import conv as cuda_conv
    geom = geometry.conv_geometry("conv2d", (4, 4), (3, 3), 1, 0, 1)
    with device_cupy() as cp:
        xi = cp.zeros((1, 1, 4, 4), dtype=np.int32)
        wi = cp.zeros((1, 1, 3, 3), dtype=np.int32)
        with pytest.raises(TypeError, match="conv2d_forward"):
            cuda_conv.conv2d_forward(xi, wi, geom, 1)
        x32 = cp.zeros((1, 1, 4, 4), dtype=np.float32)
        w64 = cp.zeros((1, 1, 3, 3), dtype=np.float64)
        with pytest.raises(TypeError, match="same dtype"):
            cuda_conv.conv2d_transpose_forward(cp.zeros((1, 1, 2, 2), dtype=np.float32), w64,
                                               geom, 1)
        with pytest.raises(TypeError, match="conv2d_weight"):
            cuda_conv.conv2d_weight(x32, cp.zeros((1, 1, 2, 2), dtype=np.float64), geom, 1,
                                    (1, 1, 3, 3))


def test_gpu_benchmark_entries_run_at_tiny_sizes():
    """benchmarks/bench_cuda_conv.py (called by the GPU check) runs end to end: tensors on
    device ``cuda`` (the emulator under ``TINYGEN_TEST_DEVICE=cuda-emu``, or a real GPU)."""
    import os
    import sys
    from tinygen import backend
    if not backend.cuda_available():
        pytest.skip("device 'cuda' is not available to tensors (run with "
                    "TINYGEN_TEST_DEVICE=cuda-emu, or on a GPU)")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "benchmarks"))
    import bench_cuda_conv as bench
    result = {"tiny": True,
              "conv_layers": bench.conv_layers(batch=1, repeat=1, channels=2, latent=2),
              "conv_ae_step": bench.conv_ae_step(batch=1, repeat=1, channels=2, latent=2),
              "lstm": bench.lstm_sequences([(2, 1, 2, 3)], repeat=1)}
    rows = result["conv_layers"]["rows"]
    assert len(rows) == 10
    times = [r[k] for r in rows for k in ("tinygen_fwd_ms", "tinygen_fwdbwd_ms", "direct_fwd_ms",
                                          "direct_fwdbwd_ms")]
    times += [result["conv_ae_step"]["tinygen_step_ms"],
              result["lstm"]["rows"][0]["tinygen_fwdbwd_ms"],
              result["lstm"]["rows"][0]["tinygen_per_step_ms"],
              result["lstm"]["rows"][0]["tinygen_whole_sequence_ms"]]
    assert all(np.isfinite(t) and t > 0 for t in times), times
    table = bench.markdown(result)
    lines = table.splitlines()
    assert sum(line.startswith("| conv ") for line in lines) == 5
    assert sum(line.startswith("| convT ") for line in lines) == 5
    assert any(line.startswith("| T=2 N=1 I=2 H=3 |") for line in lines)


@pytest.mark.parametrize("dtype", DTYPES)
def test_64_bit_index_instances_match_cpu(monkeypatch, dtype):
    """The kernels' 64-bit index instances (used for arrays of 2^31 elements or more) compiled
    with TG_FORCE_INDEX_64 and run on small arrays give the CPU results too."""
    from tinygen.kernels.cuda import _runtime
    case = (2, 2, 2, 3, geometry.conv_geometry("conv2d", (7, 6), (3, 2), (2, 1), (1, 2), (1, 2)),
            99)
    with device_cupy() as cp:
        module = cp.RawModule(code="#define TG_FORCE_INDEX_64 1\n" + _runtime.source("conv.cu"),
                              options=_runtime.COMPILE_OPTIONS)
        calls = []

        def forced_kernel(cu_file, name):
            assert cu_file == "conv.cu"
            calls.append(name)
            return module.get_function(name)

        monkeypatch.setattr(_runtime, "kernel", forced_kernel)
        _check_all_drivers(case, dtype)
    suffix = "_f32" if dtype == np.float32 else "_f64"
    assert {"im2col" + suffix, "col2im" + suffix, "swap_leading_axes" + suffix} <= set(calls)


def test_shapes_that_do_not_fit_the_geometry_are_refused():
    """A wrong shape would make a GPU kernel read or write outside its arrays: ValueError."""
    from tinygen.kernels.cuda import conv as cuda_conv
    geom = geometry.conv_geometry("conv2d", (5, 5), (3, 3), 1, 0, 1)        # 5x5 -> 3x3
    with device_cupy() as cp:
        def z(*shape):
            return cp.zeros(shape, dtype=np.float32)
        with pytest.raises(ValueError, match="conv2d_forward: shapes"):
            cuda_conv.conv2d_forward(z(1, 2, 6, 5), z(4, 2, 3, 3), geom, 1)       # x too tall
        with pytest.raises(ValueError, match="conv2d_forward: shapes"):
            cuda_conv.conv2d_forward(z(1, 2, 5, 5), z(4, 2, 3, 3), geom, 2)       # C != 2 * 2
        with pytest.raises(ValueError, match="conv2d_transpose_forward: shapes"):
            cuda_conv.conv2d_transpose_forward(z(1, 4, 3, 4), z(4, 2, 3, 3), geom, 1)
        with pytest.raises(ValueError, match="conv2d_weight: shapes"):
            cuda_conv.conv2d_weight(z(1, 2, 5, 5), z(1, 4, 3, 3), geom, 1, (4, 2, 2, 3))
        assert cuda_conv.conv2d_weight(z(1, 2, 5, 5), z(1, 4, 3, 3), geom, 1,
                                       (4, 2, 3, 3)).shape == (4, 2, 3, 3)


def test_every_kernel_once_forward_float32():
    """Each kernel of conv.cu on one small case per rung (grouped, strided, dilated, padded conv
    and a transposed conv with output_padding), forward thread order, float32: small launches
    that the sanitizer runs of tests/test_cuda_emu.py select (``-k "forward and float32"``)."""
    conv = geometry.conv_geometry("conv2d", (6, 7), (3, 2), (2, 1), (1, 0), (2, 1))
    conv_t = geometry.conv_transpose_geometry("conv_transpose2d", (3, 2), (2, 3), (2, 1), (0, 1),
                                              (1, 0), (1, 2))
    with thread_order("forward"):
        for algorithm in ALGORITHMS:
            with _algorithm(algorithm):
                _check_all_drivers((2, 2, 2, 1, conv, 5), np.float32)
                _check_all_drivers((1, 1, 1, 2, conv_t, 6), np.float32)
