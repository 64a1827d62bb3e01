# hx-ops: the two commands a user needs are `make demo` and `make test`.
# Everything else here is plumbing they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test unit functional integration lab-up lab-down lab-status bench sysdeps venv lock clean

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "hx-ops needs Python >= 3.10")'
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { echo "cannot create $(VENV): install the python3-venv package"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $@

venv: $(STAMP)

sysdeps:
	@scripts/sysdeps

# Test modules run in parallel, a module per worker (each worker has its own
# salt-master and minions): most of the suite waits on daemons, not on CPU.
TEST_WORKERS ?= 3

test: $(STAMP) sysdeps
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/functional

integration: $(STAMP) sysdeps
	$(PY) -m pytest tests/integration

demo: $(STAMP) sysdeps
	$(PY) lab/demo.py

lab-up: $(STAMP) sysdeps
	$(PY) lab/lab.py up

lab-down:
	@if [ -x $(PY) ]; then $(PY) lab/lab.py down; else echo "no lab (no $(VENV))"; fi

lab-status: $(STAMP)
	$(PY) lab/lab.py status

bench: $(STAMP) sysdeps
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Re-resolve requirements.txt into the lock file.
lock:
	rm -rf build/lockenv && $(PYTHON) -m venv build/lockenv
	build/lockenv/bin/pip install --quiet -r requirements.txt
	build/lockenv/bin/pip freeze > requirements.lock
	rm -rf build/lockenv

clean: lab-down
	rm -rf $(VENV) .pytest_cache
