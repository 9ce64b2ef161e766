"""tinygen/_memory.py: freed arrays stay in the heap, so a training loop does not page-fault."""
import ctypes.util
import resource
import subprocess
import sys

import numpy as np
import pytest

import tinygen._memory as memory

glibc = sys.platform.startswith("linux") and "libc.so.6" in str(ctypes.util.find_library("c"))


@pytest.mark.skipif(not glibc, reason="malloc tuning applies to Linux with glibc only")
def test_tuning_is_applied_and_large_arrays_are_reused():
    assert memory.applied

    def step():   # several large temporaries freed together, as in a training step
        arrays = [np.ones(n, np.float32) for n in (3 << 20, 1 << 20, 5 << 20, 2 << 20)]
        del arrays

    for _ in range(3):                       # warm up: the heap grows once
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000, faults             # measured untuned: ~20,000; tuned: 0


@pytest.mark.skipif(not glibc, reason="malloc tuning applies to Linux with glibc only")
def test_tuning_can_be_switched_off():
    code = "import tinygen, tinygen._memory as m; print(m.applied)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"TINYGEN_MALLOC_TUNING": "0", "PATH": ""}, check=True).stdout
    assert out.strip() == "False"
