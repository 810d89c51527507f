# Two commands do everything on a fresh machine:
#   make demo   set up .venv, train the binary-addition GRU, and use it
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
EXTRAS ?= dev,data

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch is pinned through constraints.txt: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/grukit train adding --out runs/adding
	$(BIN)/grukit predict runs/adding 123456789 987654321
	$(BIN)/grukit predict runs/adding 18446744073709551615 12345678901234567890

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/grukit bench

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache .hypothesis
