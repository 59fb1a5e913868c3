# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[models,dev,interop,cloud,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spine demo --workdir demo_work

test: $(STAMP)
	$(BIN)/ruff check spinedata spinemodels cli tests bench
	$(BIN)/python -m pytest -n 2 -q tests

lint: $(STAMP)
	$(BIN)/ruff check spinedata spinemodels cli tests bench

clean:
	rm -rf $(VENV) demo_work
