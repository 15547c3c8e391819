# Two commands from a fresh clone: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# tox needs python3.11, 3.12 and 3.13 on PATH; pyenv installs keep them out of it, so add them.
PYENV_ROOT ?= $(HOME)/.pyenv
empty :=
space := $(empty) $(empty)
PYENV_BINS := $(foreach v,3.11 3.13 3.12,$(wildcard $(PYENV_ROOT)/versions/$(v).*/bin))
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
	@echo "make test  - every test and static check (tox: py311, py312, py313), and the stage image built and run"

# Two install stamps: `make run` needs only what the stages run on; `make test` adds tox and
# the test tools (each tox environment installs its own; Bodywork is installed by the stage
# image's recipe where it is needed: deploy/install_stage_image.sh).
$(VENV_PY):
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: requirements_pipe.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements_pipe.txt
	touch $@

$(VENV)/.installed-test: requirements_pipe.txt requirements_cicd.txt requirements_test.txt | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r requirements_pipe.txt -r requirements_test.txt \
	    -r requirements_cicd.txt
	touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-test

# The port is checked first: a busy port fails in one line before anything is trained.
run: $(VENV)/.installed-run
	$(VENV_PY) -m pipeline.serve_model --check-port --host $(HOST) --port $(PORT)
	$(VENV_PY) -m pipeline.generate_dataset $(STORE) --if-empty
	$(VENV_PY) -m pipeline.train_model $(STORE)
	$(VENV_PY) -m pipeline.serve_model $(STORE) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(VENV)/bin/tox run-parallel --parallel-live --parallel 2 $(if $(TOX_ENVS),-e $(TOX_ENVS))

clean-venv:
	rm -rf $(VENV) .tox
