# unip-nb: the two commands are `make study` and `make test`; each installs first when .venv is missing.
VENV   := .venv
BIN    := $(VENV)/bin
PRESET ?= default
JOBS   ?= 2
STAMP  := $(VENV)/.installed

.PHONY: setup test study lab export readme

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name unip-nb --display-name unip-nb
	touch $@

setup: $(STAMP)

test: setup
	$(BIN)/nbdev-test --n-workers 1 --do-print
	$(BIN)/python -m pytest -q

study: setup
	$(BIN)/unip-nb study --preset $(PRESET) --jobs $(JOBS)

lab: setup
	$(BIN)/jupyter lab nbs

export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean

readme: setup
	$(BIN)/jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README
