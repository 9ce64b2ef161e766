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
    assert memory.tune_malloc() and memory.applied

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
    code = "import tinygen, tinygen._memory as m; print(m.tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"TINYGEN_MALLOC_TUNING": "0", "PATH": ""}, check=True).stdout
    assert out.strip() == "False"


def test_importing_tinygen_leaves_malloc_alone_and_the_trainer_tunes_it(tmp_path):
    code = ("import numpy as np, tinygen, tinygen._memory as m\n"
            "from tinygen import nn\n"
            "from tinygen.models.phases import Phase\n"
            "from tinygen.train import Trainer, TrainConfig\n"
            "print('applied:', m.applied)\n"
            "net = nn.Linear(2, 1)\n"
            "x = np.ones((4, 2), np.float32)\n"
            "phase = Phase('p', net.parameters, lambda b, rng: ((net(b[0]) ** 2).mean(), {}))\n"
            f"cfg = TrainConfig(epochs=1, batch_size=4, out={str(tmp_path)!r}, progress=False,"
            " val_fraction=0.0)\n"
            "from dataclasses import make_dataclass\n"
            "net.model_name, net.config = 'lin', make_dataclass('LinConfig', [])()\n"
            "Trainer(net, [phase], (x,), cfg).fit()\n"
            "print('applied:', m.applied)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    states = [line.split()[1] for line in out.splitlines() if line.startswith("applied:")]
    assert states == ["False", "True" if glibc else "False"]
