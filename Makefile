# Arbiter — two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCKS := requirements.lock requirements-nodeps.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) | cksum | cut -d' ' -f1)

.PHONY: install run test chaos compat-table lint bench bench-deps bench-quick services stop-services reset-data lock clean

$(STAMP): $(LOCKS)
	@$(PYTHON) -c 'import sys; sys.exit("arbiter: Python 3.11 or newer is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.lock
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install  ## start everything on embedded defaults (Ctrl-C stops it)
	$(BIN)/python -m controlplane.launcher

test: install  ## the whole test suite against real Postgres and Redis
	$(BIN)/python -m pytest $(PYTEST_ARGS)

chaos: install  ## the fault suite: every scenario on make-run stacks, Redis then RabbitMQ; writes tests/faults/results/
	$(BIN)/python -m tests.faults $(CHAOS_ARGS)

compat-table: install  ## run the real-client tests; write README's compatibility table from those that pass
	$(BIN)/python -m tests.support.compat_table $(PYTEST_ARGS)

lint: install  ## ruff, the import contracts (import-linter) and mypy, each as configured in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench-deps: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt

bench: bench-deps  ## every benchmark, side by side with LiteLLM (in its own virtualenv); writes bench/results/
	$(BIN)/python -m bench

bench-quick: bench-deps  ## the same in about two minutes
	$(BIN)/python -m bench --quick

services: install  ## start the embedded Postgres and Redis in the background (for manage.py by hand)
	$(BIN)/python -m controlplane.embedded start

stop-services: install
	$(BIN)/python -m controlplane.embedded stop

reset-data: install  ## stop the embedded services and delete .data/
	$(BIN)/python -m controlplane.embedded reset

lock:  ## re-pin requirements.lock from pyproject.toml (needs the registry); requirements-nodeps.lock is pinned by hand
	rm -rf /tmp/arbiter-lock && $(PYTHON) -m venv /tmp/arbiter-lock
	/tmp/arbiter-lock/bin/pip install --quiet '.[test]'
	/tmp/arbiter-lock/bin/pip freeze --exclude arbiter | LC_ALL=C sort > requirements.lock
	/tmp/arbiter-lock/bin/pip install --quiet --no-deps -r requirements-nodeps.lock
	@# The only broken requirement allowed is the one requirements-nodeps.lock explains: instructor's jiter bound.
	! /tmp/arbiter-lock/bin/pip check | grep -Ev '^(instructor [^ ]+ has requirement jiter|No broken requirements)'

clean:
	rm -rf $(VENV)
