# Quick start:  make demo   (set up .venv, train the demo model)
#               make test   (set up .venv, run the test suite)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m tinygen demo

test: venv
	$(VENV)/bin/pytest -q

bench: venv
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
