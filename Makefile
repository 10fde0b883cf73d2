# Quick start: `make demo` then `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-fast bench case-study clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,ray,onnx]"
	# influence (kronfluence EK-FAC): --no-deps, as its torchvision requirement pulls a CUDA torch
	$(PIP) install -q --no-deps kronfluence==1.0.1 accelerate==1.16.0 einconv==0.1.0
	touch $(STAMP)

demo: venv
	$(PY) examples/demo.py

test: venv
	@$(PY) -m pytest -q tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: venv
	$(PY) -m pytest -q tests -m "not slow and not ray and not browser"

bench: venv
	$(PY) bench/ingest.py --rows 100000
	$(PY) bench/index.py --quick
	$(PY) bench/pipelines.py --rows 100000
	$(PY) bench/triage_quality.py
	$(PY) bench/nla.py

case-study: venv
	$(PY) examples/case_study/run.py

clean:
	rm -rf demo-workspace demo-report.html case-study-workspace case-study-summary.json
