# The two set-up commands: `make demo` and `make test`. Each creates .venv if missing and installs first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.robotempo-installed

.PHONY: demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the exact CPU build available on these machines; any other spec pulls a CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robotempo demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
