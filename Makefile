# Quick start:  make train  (set up .venv, train the lecture's conv autoencoder on the
#                           embedded MNIST digits; results in runs/conv-ae/)
#               make test   (set up .venv, run the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv train demo test test-gpu-emu gpu-check bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m tinygen train conv-ae --out runs/conv-ae

demo: venv
	$(PY) -m tinygen demo

test: venv
	$(VENV)/bin/pytest -q

# The GPU backend without a GPU: every op test (the harness's checks, conv, LSTM, coupling and
# loss ops included) on device "cuda" through the stand-in cupy, the CUDA kernel families on the
# g++ CPU emulator, and sanitizer (ASan+UBSan, TSan) runs of the
# kernel tests. The pytest header says so: no GPU code runs here.
test-gpu-emu: venv
	TINYGEN_TEST_DEVICE=cuda-emu $(VENV)/bin/pytest -q tests/test_ops_*.py tests/test_cuda_*.py \
	    tests/test_conv.py tests/test_lstm.py tests/test_coupling.py tests/test_losses.py \
	    tests/test_tensor_data.py

# On a machine with a GPU and CuPy: the suite on real CuPy and the GPU benchmarks, results (JSON +
# a markdown table) in GPU_CHECK_OUT. It runs with that machine's python (GPU_PYTHON), no venv:
# GPU machines here have CuPy, PyTorch and the test tools but no network to install into a venv.
GPU_CHECK_OUT ?= runs/gpu-check
GPU_PYTHON ?= $(PYTHON)
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_OUT)

bench: venv
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis runs
