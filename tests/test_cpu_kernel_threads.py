"""The CPU kernels' multi-core paths give the results of their one-thread paths.

``kernels/cpu/_threads.run_pieces`` runs batch chunks (conv) and batch slices (LSTM) on several
threads; these tests compare each threaded kernel with the same kernel forced onto one thread
and one piece, and check the runner itself (every piece once, errors propagated, no nested
fan-out).
"""
import threading

import numpy as np
import pytest

from tinygen.kernels import geometry
from tinygen.kernels.cpu import _threads, conv as cpu_conv, lstm as cpu_lstm


def test_run_pieces_runs_each_piece_once():
    seen, lock = [], threading.Lock()

    def task(p):
        with lock:
            seen.append(p)

    _threads.run_pieces(task, range(50))
    assert sorted(seen) == list(range(50))


@pytest.mark.skipif(not _threads._SETTERS, reason="no OpenBLAS with per-thread thread counts: "
                    "run_pieces runs on the calling thread by design")
def test_run_pieces_uses_two_threads(monkeypatch):
    """Each piece waits until two different threads have taken pieces (5 s at most)."""
    monkeypatch.setattr(_threads, "N_CORES", 2)
    names, lock, both = set(), threading.Lock(), threading.Event()

    def task(p):
        with lock:
            names.add(threading.current_thread().name)
            if len(names) == 2:
                both.set()
        both.wait(timeout=5)

    _threads.run_pieces(task, range(4))
    assert len(names) == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_run_pieces_in_a_forked_child(monkeypatch):
    """A child forked after the pool started still runs every piece (its own pool)."""
    import os
    monkeypatch.setattr(_threads, "N_CORES", 2)
    _threads.run_pieces(lambda p: None, range(4))          # the parent's pool exists now
    pid = os.fork()
    if pid == 0:                                             # child: exit 0 iff all 6 ran
        seen = []
        try:
            _threads.run_pieces(seen.append, range(6))
            os._exit(0 if sorted(seen) == list(range(6)) else 1)
        except BaseException:
            os._exit(2)
    import signal
    import time
    deadline = time.monotonic() + 60
    while True:                                              # a hung child fails, not hangs
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("run_pieces hung in a forked child")
        time.sleep(0.05)
    assert os.WEXITSTATUS(status) == 0


def test_run_pieces_propagates_errors(monkeypatch):
    monkeypatch.setattr(_threads, "N_CORES", 2)

    def task(p):
        if p == 7:
            raise ValueError("piece 7")

    with pytest.raises(ValueError, match="piece 7"):
        _threads.run_pieces(task, range(10))


def test_run_pieces_nested_call_runs_in_order(monkeypatch):
    monkeypatch.setattr(_threads, "N_CORES", 2)
    inner = []

    def task(p):
        if p == 0:
            _threads.run_pieces(inner.append, range(5))

    _threads.run_pieces(task, range(4))
    assert inner == list(range(5))


def test_idle_cores_follows_the_load_average(monkeypatch):
    monkeypatch.setattr(_threads, "N_CORES", 2)
    for load, expected in ((0.2, 2), (1.2, 2), (1.6, 1), (2.4, 1), (13.0, 1)):
        monkeypatch.setattr(_threads.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert _threads.idle_cores() == expected


def _one_thread(monkeypatch):
    monkeypatch.setattr(_threads, "N_CORES", 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_batch_slices_match_one_slice(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    steps, n_batch, n_in, hid = 7, 37, 5, 6
    x = rng.standard_normal((steps, n_batch, n_in)).astype(dtype)
    h0, c0 = (rng.standard_normal((n_batch, hid)).astype(dtype) for _ in range(2))
    w_ih = (rng.standard_normal((4 * hid, n_in)) * 0.3).astype(dtype)
    w_hh = (rng.standard_normal((4 * hid, hid)) * 0.3).astype(dtype)
    b = rng.standard_normal(4 * hid).astype(dtype)
    dhs = rng.standard_normal((steps, n_batch, hid)).astype(dtype)
    dc = rng.standard_normal((n_batch, hid)).astype(dtype)
    monkeypatch.setattr(_threads, "N_CORES", 2)
    monkeypatch.setattr(cpu_lstm, "idle_cores", lambda: 2)
    assert len(cpu_lstm._batch_slices(n_batch)) == 2
    fwd = cpu_lstm.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b)
    bwd = cpu_lstm.lstm_sequence_backward(dhs, dc, x, h0, c0, w_ih, w_hh, *fwd)
    monkeypatch.setattr(cpu_lstm, "_batch_slices", lambda n: [(0, n)])
    fwd1 = cpu_lstm.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b)
    bwd1 = cpu_lstm.lstm_sequence_backward(dhs, dc, x, h0, c0, w_ih, w_hh, *fwd1)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for a, r in zip(fwd + bwd, fwd1 + bwd1):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_threaded_chunks_match_one_thread(monkeypatch, transposed, stride):
    """Chunks on two threads give the one-thread results (forward, both gradients)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((23, 16, 11, 10)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geom = tuple(geometry.AxisGeometry(n, 3, stride, 1, 1, (n + 2 - 3) // stride + 1)
                 for n in x.shape[2:])
    monkeypatch.setattr(cpu_conv, "_THREAD_CHUNK_BYTES", 20_000)   # several chunks
    monkeypatch.setattr(_threads, "N_CORES", 2)

    def run():
        if transposed:
            y = cpu_conv.conv2d_forward(x, w, geom, 1)
            return (cpu_conv.conv2d_transpose_forward(y, w, geom, 1),
                    cpu_conv.conv2d_weight(x, y, geom, 1, w.shape))
        y = cpu_conv.conv2d_forward(x, w, geom, 1)
        return y, cpu_conv.conv2d_weight(x, y, geom, 1, w.shape)

    threaded = run()
    _one_thread(monkeypatch)
    single = run()
    for a, r in zip(threaded, single):
        np.testing.assert_array_equal(a, r)
