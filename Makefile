# Seedance: `make demo` runs the main job on the shipped weights, `make test` runs the tests.
# Each creates or refreshes .venv (pinned by requirements.lock) before doing its job.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
# Each test runs single-threaded (tests/conftest.py), so two pytest-xdist workers use both cores of the
# 2-core CI machine: the suite took 6:29 instead of 10:00 on an AVX2-only 2-core EPYC. --dist loadfile keeps a
# file's tests, and its module fixtures (a served app, a loaded model), in one worker. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv system-deps demo test lint app bench clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[train,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The browser test drives Debian's chromium (never a downloaded browser). Installed when missing
# and apt-get is usable (root); otherwise that one test is skipped with the reason shown.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium/chromedriver missing (apt-get install chromium chromium-driver); browser test skipped"; fi; \
	fi

demo: venv
	$(VENV)/bin/seedance demo --out samples

test: venv system-deps
	$(PY) -m ruff check --no-cache .
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: venv
	$(PY) -m ruff check --no-cache .
	$(PY) -m ruff format --check .

app: venv
	$(VENV)/bin/seedance app

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
