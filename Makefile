# The one entry point for developers and CI. `make test` works on a fresh machine: it makes its own
# virtual environment, installs the project with its test extras, installs mosquitto when it can
# (root with apt-get; elsewhere the broker tests skip, saying why), and runs every test (slow ones too).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint venv clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,serve,local,fast]'
	touch $(BIN)/activate

venv: $(BIN)/activate

lint: venv
	$(BIN)/ruff check bridge tests examples benchmarks
	$(BIN)/ruff format --check bridge tests examples benchmarks

test: venv
	$(BIN)/ruff check bridge tests examples benchmarks
	sh scripts/ensure-mosquitto.sh
	sh scripts/ensure-chromium.sh
	sh scripts/ensure-postgresql.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

.PHONY: demo
# The main job on a fresh machine: embedded broker + bridge + camera simulator (see README).
demo: venv
	$(BIN)/plate-bridge demo $(DEMO_ARGS)
