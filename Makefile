# Lapin — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench clean dsfr axe-core screenshots

# Reinstall when the dependencies or the set of packages change (editable installs
# only map the packages that existed when they were made).
$(STAMP): pyproject.toml setup.py $(wildcard */__init__.py)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Creates/upgrades the SQLite database, loads the demo data, serves on
# http://$(HOST):$(PORT) with the embedded worker and scheduler (no Redis).
# `make run PORT=5050` when 5000 is taken; `make run HOST=0.0.0.0` to be reached
# from another machine. The links in messages (PUBLIC_BASE_URL) follow, unless
# the environment sets them.
HOST ?= 127.0.0.1
PORT ?= 5000

run: export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
# Outbound webhooks may go to a receiver on this machine (docs/webhooks.md).
run: export WEBHOOK_ALLOW_PRIVATE ?= 1
run: $(STAMP)
	$(BIN)/gateway init-db
	$(BIN)/gateway seed-demo
	$(BIN)/gateway run --host $(HOST) --port $(PORT) --no-reload

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

LINT_PATHS := gateway providers scheduler webhooks tests bench migrations tools setup.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# Front-end packages from the npm registry (tools/vendor_npm.py): the DSFR's built files
# into static/vendor/dsfr, axe-core (browser tests only) into tests/browser/vendor.
# `make dsfr DSFR_VERSION=1.15.3` pins a version; by default the newest 1.x.
dsfr:
	$(PYTHON) tools/vendor_npm.py dsfr $(DSFR_VERSION)

axe-core:
	$(PYTHON) tools/vendor_npm.py axe-core $(AXE_VERSION)

# The README's pictures (docs/screenshots/*.png), taken by the browser tests from the demo
# data (tests/browser/test_screenshots.py; needs Debian's chromium).
screenshots: $(STAMP)
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser/test_screenshots.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache
