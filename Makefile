# Quick start: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The pin matters: an unpinned torch pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: demo test check install install-test browser postgres lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)

# The doctor extra (cleanlab) too: the README's `cnnlab doctor` example runs after `make demo`;
# and OpenVINO, the fastest feature engine for frozen backbones (docs/performance.md).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH) -e '.[doctor,openvino]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q $(TORCH) -e '.[test,track]'
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/cnnlab train --out runs/demo --force
	@echo "open runs/demo/report.html in a browser"

# Debian's chromium for the report's browser tests, installed where missing (under CI=true a
# failed install fails the run: a skipped browser test must never hide behind a green run).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    ($$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || { echo "warning: could not install chromium; browser tests will be skipped"; \
	         [ "$${CI:-}" != true ] || exit 1; }; }

# Debian's PostgreSQL server for the multi-worker search test (a throwaway cluster the test
# starts and stops), installed where missing; under CI=true a failed install fails the run.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    ($$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || { echo "warning: could not install postgresql; its tests will be skipped"; \
	         [ "$${CI:-}" != true ] || exit 1; }; }

# Tests run in two pytest-xdist workers, each pinned to its own share of the CPUs (see
# tests/conftest.py): the suite keeps about one core busy on average, so two workers nearly
# halve its time. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Everything (CI runs this), plus the installs on a fresh machine.
test: install-test browser postgres
	$(PYTEST)

# The fast tier: lint and every test not marked slow.
check: install-test
	$(BIN)/ruff check src tests bench
	$(PYTEST) -m "not slow"

lint: install-test
	$(BIN)/ruff check src tests bench

# Lightning and skorch are measured, never used by cnnlab: the `bench` extra, with torch pinned.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install -q $(TORCH) -e '.[test,bench]'
	@touch $@

# The full benchmark (< 20 min on 2 quiet cores): writes bench/results.md. BENCH_ARGS=--quick
# runs a one-minute smoke test instead.
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
