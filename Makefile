# The one entry point for developers and CI. `make test` works on a fresh machine: it makes its own
# virtual environment, installs the project with its test extras, installs mosquitto when it can
# (root with apt-get; elsewhere the broker tests skip, saying why), builds the docs site strictly (a
# broken link or a generated page that cannot be made fails), and runs every test (slow ones too).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint venv clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,serve,local,fast,docs]'
	touch $(BIN)/activate

venv: $(BIN)/activate

lint: venv
	$(BIN)/ruff check bridge tests examples benchmarks docs/hooks.py
	$(BIN)/ruff format --check bridge tests examples benchmarks docs/hooks.py

# The docs site is built strictly: a broken link or anchor, a page left out of the nav or a generated
# page that cannot be made fails. Not --quiet: it hides the warnings from --strict, which then passes.
test: venv
	$(BIN)/ruff check bridge tests examples benchmarks docs/hooks.py
	$(BIN)/lint-imports  # the import contracts in .importlinter: no cycle, no upward import
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	sh scripts/ensure-mosquitto.sh
	sh scripts/ensure-chromium.sh
	sh scripts/ensure-postgresql.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache

.PHONY: demo
# The main job on a fresh machine: embedded broker + bridge + camera simulator (see README).
demo: venv
	$(BIN)/plate-bridge demo $(DEMO_ARGS)
