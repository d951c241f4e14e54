# `make setup` is idempotent: it (re)installs only when pyproject.toml changed,
# and `imgrec model build` keeps an intact model.
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch, used only to export the model (never when serving).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test clean redis-server
setup: $(VENV)/.installed redis-server
	$(BIN)/imgrec model build

# The Redis adapter's tests start their own redis-server; it comes from the system.
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "note: install redis-server (e.g. apt-get install redis-server) to run the Redis tests"; fi; }

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

clean:
	rm -rf $(VENV) build *.egg-info
