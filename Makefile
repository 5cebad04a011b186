# Two commands for a new user: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DJANGO_DEBUG ?= true

.PHONY: run test test-fast test-faults lint install clean demo browser fuzz bench lock

# Exact versions (with hashes) from the lock, then the project itself without resolving
# anything again: the same packages on every machine, CI and the image.
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Every lock file from pyproject.toml, for Python 3.11 on any platform (the image is
# Linux; a developer's machine may not be). Run after changing a dependency; the suite
# fails (tests/operations/test_deployment_files.py) while a lock misses one.
UV_VERSION := 0.13.9
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	mkdir -p requirements
	$(LOCK) -o requirements/runtime.lock
	$(LOCK) --extra dev -o requirements/dev.lock
	$(LOCK) --extra dev --extra bench -o requirements/bench.lock

install: $(STAMP)

run: $(STAMP)
	$(PY) -m shop.devstack run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Debian's chromium and its driver, for the admin's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		command -v apt-get >/dev/null || { echo "install chromium and chromium-driver"; exit 1; }; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

# Checks (lint, the import rules of pyproject.toml, Django's), then the whole suite (fast
# and fault tests) against the real servers.
test: $(STAMP) browser
	$(PY) -m shop.devstack exec -- sh -c '\
		$(VENV)/bin/ruff check . && \
		$(VENV)/bin/lint-imports && \
		$(PY) manage.py check && \
		$(PY) manage.py makemigrations --check --dry-run && \
		$(VENV)/bin/pytest'

test-fast: $(STAMP) browser
	$(PY) -m shop.devstack exec -- $(VENV)/bin/pytest -m "not faults"

test-faults: $(STAMP)
	$(PY) -m shop.devstack exec -- $(VENV)/bin/pytest -m faults

# Schemathesis against the running API, with more examples than `make test` uses.
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(PY) -m shop.devstack exec -- $(VENV)/bin/pytest tests/api_contract/test_api_fuzz.py

# Every benchmark (repeated, medians) into docs/BENCHMARKS.md; the peer is bench-only.
bench: $(STAMP)
	$(PY) -m pip install --quiet --require-hashes -r requirements/bench.lock
	$(PY) -m pip install --quiet --no-deps -e '.[dev,bench]'
	$(PY) -m shop.devstack exec -- $(PY) bench/run_all.py $(BENCH_ARGS)

# The lag-window story over HTTP, against a running `make run` (or its own stack).
demo: $(STAMP)
	$(PY) bench/lag_window_demo.py

clean:
	rm -rf $(VENV) .devstack .pytest_cache .ruff_cache .hypothesis .import_linter_cache
