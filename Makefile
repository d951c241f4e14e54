# `make setup` is idempotent: it (re)installs only when pyproject.toml changed,
# and `imgrec model build` keeps an intact model.
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch, used only to export the model (never when serving).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test clean system-packages dist
setup: $(VENV)/.installed system-packages
	$(BIN)/imgrec model build

# From the system, for the tests: redis-server (the Redis adapter's tests start their
# own) and Chromium (the page's tests drive it with Playwright; nothing downloads a browser).
system-packages:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	    else echo "note: install$$missing (e.g. apt-get install$$missing) to run their tests"; fi; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[export,aws,redis,bench,test]"
	touch $@

run: setup
	$(BIN)/imgrec up

test: setup
	$(BIN)/pytest -q

# A wheel and an sdist in dist/: what a host that serves installs (pip install
# 'dist/imgrec-<version>-py3-none-any.whl[redis]'), without a checkout or torch.
dist: $(VENV)/.installed
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info
