# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-fault bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench,rocksdb,spark]'
	$(BIN)/labelstore kafka fetch
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/labelstore --repo examples/fraud demo run

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m 'not fault'

test-fault: install
	$(BIN)/python -m pytest -m fault

bench: install
	$(BIN)/python bench/publish_throughput.py

clean:
	-$(BIN)/labelstore kafka down
	rm -rf $(VENV) .labelstore
