# `make install` creates or reuses .venv and installs the pinned stack (idempotent);
# `make run` runs the embedded default job; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgepipe-installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/edgepipe run

test: install
	$(BIN)/python -m pytest -q -ra

bench: install
	$(BIN)/python benchmarks/rerun.py

clean:
	rm -rf $(VENV) runs build *.egg-info
