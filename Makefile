# Two commands for a new user: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DJANGO_DEBUG ?= true

.PHONY: run test test-fast test-faults lint install clean demo browser fuzz bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m shop.devstack run

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Debian's chromium and its driver, for the admin's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		command -v apt-get >/dev/null || { echo "install chromium and chromium-driver"; exit 1; }; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

# Checks, then the whole suite (fast and fault tests) against the real servers.
test: $(STAMP) browser
	$(PY) -m shop.devstack exec -- sh -c '\
		$(VENV)/bin/ruff check . && \
		$(PY) manage.py check && \
		$(PY) manage.py makemigrations --check --dry-run && \
		$(VENV)/bin/pytest'

test-fast: $(STAMP) browser
	$(PY) -m shop.devstack exec -- $(VENV)/bin/pytest -m "not faults"

test-faults: $(STAMP)
	$(PY) -m shop.devstack exec -- $(VENV)/bin/pytest -m faults

# Schemathesis against the running API, with more examples than `make test` uses.
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(PY) -m shop.devstack exec -- $(VENV)/bin/pytest tests/test_api_fuzz.py

# Every benchmark (repeated, medians) into docs/BENCHMARKS.md; the peer is bench-only.
bench: $(STAMP)
	test ! -f bench/requirements-peer.txt || $(PY) -m pip install --quiet -r bench/requirements-peer.txt
	$(PY) -m shop.devstack exec -- $(PY) bench/run_all.py $(BENCH_ARGS)

# The lag-window story over HTTP, against a running `make run` (or its own stack).
demo: $(STAMP)
	$(PY) bench/lag_window_demo.py

clean:
	rm -rf $(VENV) .devstack .pytest_cache .ruff_cache .hypothesis
