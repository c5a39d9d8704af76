# make demo: set up and audit the bundled real sample (writes report.json and report.html).
# make test: set up with the training, dev, gx, ray and review extras (CPU torch from local disk) and run the tests.
# make fuzz: coverage-guided fuzzing (atheris) of the reader and the audit for FUZZ_SECONDS (default 300); crashing
#   inputs are saved in bench/out/fuzz-crashes; replay one with `.venv/bin/python -m tests.fuzz.run FILE`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATA := examples/alpaca_eval_sample.json
FUZZ_SECONDS ?= 300

.PHONY: demo test fuzz bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-all: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,dev,gx,ray,review]'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/datakit audit $(DEMO_DATA) --label-field dataset --json report.json --html report.html --fail-on never

test: $(VENV)/.installed-all
	$(BIN)/python -m pytest

fuzz: $(VENV)/.installed-all
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m tests.fuzz.run

bench: $(VENV)/.installed-all
	$(BIN)/python bench/run.py

lint: $(VENV)/.installed-all
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) report.json report.html report.md
