# Two commands from a fresh clone: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# tox needs python3.9, 3.11 and 3.13 on PATH; pyenv installs keep them out of it, so add them.
PYENV_ROOT ?= $(HOME)/.pyenv
empty :=
space := $(empty) $(empty)
PYENV_BINS := $(foreach v,3.11 3.9 3.13,$(wildcard $(PYENV_ROOT)/versions/$(v).*/bin))
ifneq ($(strip $(PYENV_BINS)),)
export PATH := $(subst $(space),:,$(strip $(PYENV_BINS))):$(PATH)
endif

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
STORE ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
TOX_ENVS ?=

.PHONY: help run test venv clean-venv

help:
	@echo "make run   - install, add a sample tranche if the store is empty, train, serve on :$(PORT)"
	@echo "make test  - every test and static check (tox: py39, py311, py313)"

$(VENV)/.installed: requirements_pipe.txt requirements_cicd.txt requirements_test.txt constraints_bodywork.txt
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=constraints_bodywork.txt PIP_BUILD_CONSTRAINT=constraints_bodywork.txt \
	    $(VENV_PY) -m pip install --quiet -r requirements_pipe.txt -r requirements_test.txt \
	    -r requirements_cicd.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV_PY) -m pipeline.generate_dataset $(STORE) --if-empty
	$(VENV_PY) -m pipeline.train_model $(STORE)
	$(VENV_PY) -m pipeline.serve_model $(STORE) --host $(HOST) --port $(PORT)

test: venv
	$(VENV)/bin/tox run-parallel --parallel-live --parallel 2 $(if $(TOX_ENVS),-e $(TOX_ENVS))

clean-venv:
	rm -rf $(VENV) .tox
