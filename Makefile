# `make run` sets up what serving needs and starts the service; `make test` sets up
# everything a developer needs and runs every check. Both are idempotent: the venv is
# (re)installed only when pyproject.toml changed, and `imgrec model build` keeps an
# intact model. Nothing here installs torch: the model is built with numpy and onnx.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# pytest's worker processes: both cores by default (`make test JOBS=1`: one process).
JOBS ?= 2

.PHONY: setup run test test-fast test-containers lint docs test-system-packages test-container-packages dist clean

# The service and its model build: what `make run` needs, and no more.
$(VENV)/.serving: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[export]"
	touch $@

# A developer's: the backends' clients, the lab, the test and lint tools besides.
$(VENV)/.installed: $(VENV)/.serving
	$(BIN)/pip install -q -e ".[export,aws,redis,bench,test]"
	touch $@

setup: $(VENV)/.installed
	$(BIN)/imgrec model build

run: $(VENV)/.serving
	$(BIN)/imgrec model build
	$(BIN)/imgrec up

# From the system, for the tests only: redis-server (the Redis adapter's tests start their
# own), Chromium (the page's tests drive it with Playwright; nothing downloads a browser)
# faketime (the tests of hosts whose clocks differ run a process on a skewed clock) and
# strace (the test that durability's order holds reads the web tier's system calls).
test-system-packages:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  command -v strace >/dev/null || missing="$$missing strace"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v faketime >/dev/null || missing="$$missing faketime"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	    else echo "note: install$$missing (e.g. apt-get install$$missing) to run their tests"; fi; fi

# Static checks: lint, the direction of imports between the parts, types.
lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy

# The documentation site, built strictly: a broken link or anchor, or a generated table
# (tools/docs_hooks.py) that cannot be made, fails it. build/ is ignored by git.
docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict --site-dir build/site

# Everything but the containers (the README's test command; CI runs it, then test-containers).
test: lint test-system-packages docs
	$(BIN)/pytest -n $(JOBS) -m "not containers"

# From the system, for the containers' tests: Docker's engine (docker.io), debootstrap (the
# local base image: no image registry answers here) and redis-server.
test-container-packages:
	@missing=""; command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	  command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "note: install$$missing (e.g. apt-get install$$missing) to run the containers' tests"; fi; fi

# The image built and run (tests/containers, as root): dockerd started if none runs, the
# base image made with debootstrap the first time, the image built, every role in its own
# container over Redis and moto's S3, a worker and a web container killed mid-run.
# IMGREC_TEST_PIP_INDEX_URL: the index the build installs from (default PyPI).
test-containers: setup test-container-packages
	$(BIN)/pytest -m containers -rA tests/containers

# Before every commit: the unit tests and the contract tests of the adapters that need no server.
test-fast: lint
	$(BIN)/pytest -n $(JOBS) -m "(unit or contract) and not server"

# A wheel and an sdist in dist/: what a host that serves installs (pip install
# 'dist/imgrec-<version>-py3-none-any.whl[redis]'), without a checkout.
dist: $(VENV)/.installed
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info
