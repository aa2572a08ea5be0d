# mlops-wb: `make run` sets up .venv and runs the default pipeline; `make test` sets up and runs all tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlops-wb-installed

.PHONY: run test lab setup lock sync-check layers nbtest docs pytest bench clean-store ui status postgres fuzz

run: $(STAMP)
	$(BIN)/mlops-wb run

test: $(STAMP) sync-check layers nbtest docs pytest

setup: $(STAMP)

# Re-install only when the declared dependencies change. requirements.lock pins every
# transitive dependency (regenerate with `make lock` after changing pyproject.toml).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

lock:
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip list --format=freeze --exclude-editable --exclude pip --exclude setuptools --exclude wheel > requirements.lock

# nbdev-export and nbdev-clean must leave notebooks and library unchanged.
sync-check: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash tools/check_sync.sh

# The import contract in pyproject.toml: a module imports only the layers below it (imports inside functions count).
layers: $(STAMP)
	$(BIN)/lint-imports

nbtest: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2

# The documentation site in _docs/, offline and without Quarto (Sphinx + myst-nb over nbdev's processed
# notebooks; the guide pages are executed; every internal link and anchor is checked). With Quarto
# installed, `$(BIN)/nbdev-docs` builds the Quarto site from the same notebooks and nbs/sidebar.yml.
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

pytest: $(STAMP) $(VENV)/evidently/.installed $(VENV)/.chromium $(VENV)/.postgresql
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=20

# The input fuzzing of tests/test_fuzz_inputs.py (pipeline.yaml, -p values, data files) with many more examples
# than `make test` runs (hypothesis profile `fuzz`, random; FUZZ_EXAMPLES=N sets the count per test, default 1000).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/test_fuzz_inputs.py -q --durations=10 -p no:cacheprovider

# The browser tests drive Debian's chromium (Playwright's own browser download is never used).
$(VENV)/.chromium:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	chromium --version
	touch $@

# PostgreSQL's programs (initdb, pg_ctl) for team mode (`mlops-wb server`) and its tests: Debian's package.
# The workbench runs its own clusters in folders it is given, never the system service.
postgres: $(VENV)/.postgresql
$(VENV)/.postgresql:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	ls /usr/lib/postgresql/*/bin/initdb
	touch $@

# Evidently in its own venv (it needs pandas<3): only tests/test_evidently.py and bench/bench_drift.py use it.
$(VENV)/evidently/.installed: tools/evidently-requirements.txt
	test -x $(VENV)/evidently/bin/python || $(PYTHON) -m venv $(VENV)/evidently
	$(VENV)/evidently/bin/python -m pip install --quiet -r tools/evidently-requirements.txt
	touch $@

bench: $(STAMP)
	$(BIN)/python bench/bench_cache.py

# schemathesis over the scoring server's OpenAPI schema, 1000 cases per operation and mode (make test runs 60)
fuzz-http: $(STAMP)
	MLOPS_WB_FUZZ_HTTP_EXAMPLES=$${MLOPS_WB_FUZZ_HTTP_EXAMPLES:-1000} $(BIN)/python -m pytest tests/test_fuzz_http.py -q -s

status: $(STAMP)
	$(BIN)/mlops-wb status

ui: $(STAMP)
	$(BIN)/mlops-wb ui

lab: $(STAMP)
	$(BIN)/mlops-wb lab

clean-store:
	rm -rf store .mlops_wb reports/*/ reports/index.html

clean-docs:
	rm -rf _docs _proc .docs_src .docs_build
