# unip-nb: the two commands are `make study` and `make test`; each installs first when .venv is missing.
VENV   := .venv
BIN    := $(VENV)/bin
PRESET ?= default
JOBS   ?= 2
STAMP  := $(VENV)/.installed

.PHONY: setup test test-gpu study lab export readme

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name unip-nb --display-name unip-nb
	touch $@

setup: $(STAMP)

# the tests run on the CPU even beside a GPU: the resume tests compare metrics to the last digit
test: setup
	CUDA_VISIBLE_DEVICES= $(BIN)/nbdev-test --n-workers 1 --do-print
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -q -rs

test-gpu: setup
	$(BIN)/nbdev-test --n-workers 1 --do-print --flags gpu nbs/05_training.ipynb
	$(BIN)/python benchmarks/distill_step.py --device cuda --preset paper --batch 32 --amp bf16 --learner

study: setup
	$(BIN)/unip-nb study --preset $(PRESET) --jobs $(JOBS)

lab: setup
	$(BIN)/jupyter lab nbs

export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean

readme: setup
	$(BIN)/jupyter nbconvert --to markdown --execute --ExecutePreprocessor.kernel_name=unip-nb nbs/index.ipynb --output-dir . --output README
