# `make install` creates or reuses .venv and installs the pinned stack (idempotent);
# `make run` runs the embedded default job; `make test` runs the test suite, `make test-fast` its quick tier.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgepipe-installed

.PHONY: install run test test-fast lint bench clean adb real-models

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@echo "make install: the pinned stack into $(VENV) (torch, TensorFlow, onnx2tf: about 2 minutes when new)"
	$(BIN)/python -m pip install --progress-bar off -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --progress-bar off -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

run: install
	$(BIN)/edgepipe run

# The on-device tests drive the real adb against fake phones; as root on Debian/Ubuntu it is installed here.
adb:
	@command -v adb >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -qq adb >/dev/null; } || \
		{ echo "adb is missing: install Android platform-tools (Debian/Ubuntu: sudo apt-get install adb)"; exit 1; }

# The suite on JOBS workers (a file stays on one worker, so its fixtures are built once), then the
# tests that measure time alone on a quiet machine. OpenMP threads sleep instead of spinning while
# they wait: with two workers on two cores, spinning threads starve the other worker.
JOBS ?= 2
PARALLEL := OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -ra -n $(JOBS) --dist loadfile

test: install adb lint
	$(PARALLEL) --durations=15 -m "not timing"
	$(BIN)/python -m pytest -q -ra --durations=5 -m "timing"

# The developer's tier: everything but whole runs, the conformance suite and long conversions (tests marked slow).
test-fast: install adb lint
	$(PARALLEL) --durations=10 -m "not slow and not timing"
	$(BIN)/python -m pytest -q -ra --durations=5 -m "timing and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# torchvision and timm for benchmarks/real_models.py; --no-deps: torchvision's wheel asks for another torch.
real-models: install
	$(BIN)/python -m pip install --no-deps -r benchmarks/requirements-real-models.txt

bench: install
	$(BIN)/python benchmarks/rerun.py

clean:
	rm -rf $(VENV) runs build *.egg-info
