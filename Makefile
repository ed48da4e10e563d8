# The two commands of the README: `make run` (the whole stack) and `make test` (the test suite).
# Both set everything up on a fresh Debian/Ubuntu machine: system tools, virtualenv, Python deps.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup tools venv test compose-test images run bench eval register finetune clicklog clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

tools: ## install prometheus, alertmanager, docker.io, docker-compose, mmdebstrap (Debian), compose v2, when missing
	@bash scripts/install_tools.sh

$(STAMP): pyproject.toml
	@bash scripts/ensure_venv.sh "$(PYTHON)" "$(VENV)"
	# torch first, pinned: a looser resolution would pull several GB of CUDA wheels on CPU machines.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP) ## create the virtualenv and install the Python deps

setup: tools venv ## everything the stack and the tests need

test: setup ## run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

compose-test: setup ## only the compose tests: builds the images, brings the stack up with Docker
	$(PY) -m pytest tests/compose $(PYTEST_ARGS)

images: tools ## build the Docker images on a machine without Docker Hub (docker/build_images.sh)
	@bash docker/ensure_dockerd.sh
	@bash docker/build_images.sh

run: setup ## run the whole stack on localhost (Ctrl-C stops it; registers missing versions first)
	$(PY) scripts/run_stack.py

bench: setup ## run the benchmarks (prints figures; not part of the tests)
	$(PY) benchmarks/serving.py

eval: setup ## TEST-split retrieval (NDCG@10, recall@100): BM25, normalised BM25, base model, served versions
	$(PY) -m inference_server.evaluate --compare

register: setup ## register the versions the server config loads (golden set, drift reference, evaluation, sha256)
	$(PY) -m inference_server.lifecycle.registration register --policy --missing-only

FINETUNE_ARGS ?= --time-budget 3600
finetune: setup ## fine-tune the encoder on the TRAIN split into a new registered version (docs/training.md)
	$(PY) -m inference_server.training $(FINETUNE_ARGS)

CLICKLOG_ARGS ?= --request-log var/run/stack/logs/requests.jsonl --out var/clicks.jsonl
clicklog: setup ## join the stack's request log (queries, clicks) into a click log for finetune (docs/training.md)
	$(PY) -m inference_server.click_log $(CLICKLOG_ARGS)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) var .pytest_cache
