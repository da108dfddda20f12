# Two commands set up a fresh machine: `make run` (the app, locally) and `make test` (lint, types, docs, tests).
# PYTHON= picks the interpreter (3.11+) the virtualenv is made from; VENV= where it lives.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# teams-js for the Teams tab, from npm at the version teams/package-lock.json pins (npm ci: like pip for the venv).
NPM ?= npm
TEAMS_JS := teams/node_modules/.package-lock.json

.PHONY: run test lint docs docs-build bench package infra-check clean rebuild-venv

# The stamp records the interpreter ("path version") the venv was made from: another one remakes the venv.
PYTHON_ID := $(shell $(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])' 2>/dev/null)
ifneq ($(PYTHON_ID),$(shell cat $(STAMP) 2>/dev/null))
REBUILD_VENV := rebuild-venv
endif

$(STAMP): requirements.txt requirements-dev.txt $(REBUILD_VENV)
	@test -n '$(PYTHON_ID)' || { echo "make: PYTHON=$(PYTHON) does not run: pass PYTHON=/path/to/python3 (3.11+)" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is Python $(lastword $(PYTHON_ID)); 3.11+ is needed (PYTHON=python3.11)" >&2; exit 2; }
	$(PYTHON) -m venv $(if $(REBUILD_VENV),--clear )$(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	echo '$(PYTHON_ID)' > $(STAMP)

rebuild-venv: ;

$(TEAMS_JS): teams/package.json teams/package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "make: $(NPM) is missing (apt-get install nodejs npm): it installs teams-js for the Teams tab" >&2; exit 2; }
	cd teams && $(NPM) ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# teams-js when npm is here to install it: without it the card preview's Teams mode uses a stand-in, and the tests
# that need the real library skip, saying so (CI installs npm and sets REQUIRE_TEAMS_JS=1, which fails instead).
WITH_TEAMS_JS := $(if $(shell command -v $(NPM) 2>/dev/null),$(TEAMS_JS))

run: $(STAMP) $(WITH_TEAMS_JS)
	$(BIN)/python -m devserver$(if $(PROVIDERS), --providers $(PROVIDERS))$(if $(PORT), --port $(PORT))$(if $(KAIZALA_PORT), --kaizala-port $(KAIZALA_PORT))$(if $(ARGS), $(ARGS))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint docs-build $(WITH_TEAMS_JS)
	$(BIN)/python -m pytest

# The documentation site (mkdocs.yml, docs/). `make docs` serves it on 127.0.0.1 (DOCS_PORT= picks the port) and
# rebuilds it on every edit, printing a broken link as a WARNING but serving on; `make test` builds it with
# --strict into build/site (git-ignored, never deployed), so a broken link between pages, a missing anchor or a
# page left out of nav fails the test command.
DOCS_PORT ?= 8000
DOCS_SITE ?= build/site
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

docs: $(STAMP)
	$(MKDOCS) serve --no-strict --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: $(STAMP)
	$(MKDOCS) build --strict --site-dir $(DOCS_SITE)

bench: $(STAMP)
	$(BIN)/python -m bench

package: $(STAMP) $(TEAMS_JS)
	$(BIN)/python -m devserver.package $(if $(API_URL),--api-url $(API_URL),)$(if $(TAB_URL), --tab-url $(TAB_URL))$(if $(TEAMS_CLIENT_ID), --teams-client-id $(TEAMS_CLIENT_ID))

# checkov over infra/, offline (--skip-download: no Prisma Cloud look-ups), in its own venv: its many pinned
# dependencies would clash with the dev venv's.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv --clear $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

infra-check: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d infra --framework bicep --compact --quiet --skip-download

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build teams/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
