# Two entry points do all of the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e ".[test]"
	touch $@

$(VENV)/.system: .ci/apt-packages.txt .ci/system-deps.sh | $(VENV)/.base
	.ci/system-deps.sh
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/thermoxanes demo $(DEMO_ARGS)

test: $(VENV)/.test $(VENV)/.system
	$(PY) -m ruff check thermoxanes tests benchmarks
	$(PY) -m pytest -q --durations=25
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q tests/analysis

lint: $(VENV)/.test
	$(PY) -m ruff check thermoxanes tests benchmarks

bench: $(VENV)/.test
	$(PIP) install -e ".[bench]"
	for b in benchmarks/bench_*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
