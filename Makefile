# Quick start:  make train  (set up .venv, train the lecture's conv autoencoder on the
#                           embedded MNIST digits; results in runs/conv-ae/)
#               make test   (set up .venv, run the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv train demo test bench clean

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

bench: venv
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis runs
