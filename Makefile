# mcuquant: the README's commands.
#   make setup   install everything the project needs (safe to re-run; quick when done)
#   make test    run the test suite (everything but the long campaigns marked slow)
#   make test-all  the test suite plus the slow campaigns (500 random models, 100k fuzzed models)
#   make demo    run the offline demo on sklearn's digits data set
#   make clean   remove caches and demo output (keeps .venv; `make distclean` removes it)

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
# Touched after a successful `pip install -e '.[test]'`; pip re-runs when pyproject.toml is newer.
STAMP       := $(VENV)/.mcuquant-installed
PYTEST_ARGS ?=
# pytest-xdist workers, whole test files per worker (module fixtures build once); 1 runs in-process.
TEST_WORKERS ?= 2

# Debian packages: the host C compiler (builtin runtime on the host, sanitizer builds), the
# Cortex-M cross compiler with its C/C++ libraries, the emulator, and Chromium (the HTML report's
# screenshot test drives it through playwright).
APT_PACKAGES := gcc libc6-dev gcc-arm-none-eabi libnewlib-arm-none-eabi \
                libstdc++-arm-none-eabi-newlib qemu-system-arm chromium

.PHONY: setup system-deps pio-bootstrap test test-all demo clean distclean

# setup: venv + Python package, system toolchain and emulator, PlatformIO's offline bootstrap.
setup: $(STAMP) system-deps pio-bootstrap

# The virtual environment itself (only when missing).
$(VPY):
	$(PYTHON) -m venv $(VENV)

# The project and its test extras, editable; re-run only when pyproject.toml changed.
$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -e '.[test]'
	touch $@

# apt packages, installed only when gcc, arm-none-eabi-gcc, qemu-system-arm or /usr/bin/chromium is
# missing. Uses sudo only when not root (sudo -n without a terminal, so CI never waits for a password).
system-deps:
	@if command -v gcc >/dev/null 2>&1 && command -v arm-none-eabi-gcc >/dev/null 2>&1 \
	    && command -v qemu-system-arm >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then \
	    echo "setup: gcc, arm-none-eabi-gcc, qemu-system-arm and chromium present"; \
	else \
	    if [ "$$(id -u)" = 0 ]; then sudo=; elif [ -t 0 ]; then sudo=sudo; else sudo="sudo -n"; fi; \
	    echo "setup: installing $(APT_PACKAGES)"; \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	        $(APT_PACKAGES); \
	fi

# PlatformIO's core package tool-scons, built from PyPI when missing (its registry is unreachable).
pio-bootstrap: $(STAMP)
	$(VPY) -m mcuquant.build.pio_bootstrap

# test: the pytest suite; pytest's exit code 5 (no test collected) is a failure, said plainly.
test: setup
	@rc=0; $(VPY) -m pytest -q $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) \
	    $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: error: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

# test-all: the suite plus the slow acceptance campaigns.
test-all: PYTEST_ARGS += --runslow
test-all: test

# demo: digits -> CNN -> QAT and PTQ -> host ladder -> qemu-nano33 (QEMU), offline; report.json in the folder.
demo: setup
	$(VENV)/bin/mcuquant demo --out mcuquant-out/demo

# clean: caches and demo output; the venv stays (its stamp goes, so setup re-runs pip).
clean:
	rm -rf $(STAMP) .pytest_cache .hypothesis mcuquant-out *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# distclean: everything setup made inside the checkout, the venv included.
distclean: clean
	rm -rf $(VENV)
