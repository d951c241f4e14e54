# `make setup` is idempotent: it (re)installs only when pyproject.toml changed,
# and `imgrec model build` keeps an intact model.
VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch, used only to export the model (never when serving).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test bench clean
setup: $(VENV)/.installed
	$(BIN)/imgrec model build

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[export,test]"
	touch $@

run: setup
	$(BIN)/imgrec up

test: setup
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
