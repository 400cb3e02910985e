# Set-up and main jobs. `make demo` and `make test` work from nothing: they create a virtualenv
# (VENV, default .venv, or the active one), install pagbench into it, then run.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PYTHON := $(VENV)/bin/python
# torch and torchvision are installed first and pinned to builds that exist for this platform;
# override, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Optional libraries the tests compare against, installed without their pins (their other
# dependencies are in the test extra): robustbench pins timm==1.0.9, robustness wants GPU tools.
NODEPS_SPEC ?= robustbench==1.1.1 pyautoattack==0.2.0 robustness==1.2.1.post2 cox==0.2
STAMP := $(VENV)/.pagbench-installed
TEST_STAMP := $(VENV)/.pagbench-test-installed
WANT = $(CURDIR) $$(cat pyproject.toml Makefile | sha256sum | cut -c1-16)

.PHONY: install install-test demo test test-fast bench docs leaderboard clean slurm-up slurm-down

# pagbench and what it needs to run (torch first, from TORCH_SPEC): what `make demo` uses
install:
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@want="$(WANT)"; \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
		$(PYTHON) -m pip install -q --upgrade pip && \
		($(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install -q $(TORCH_SPEC)) && \
		$(PYTHON) -m pip install -q -e . && echo "$$want" > $(STAMP); \
	fi

# plus the test stack and the libraries the tests compare against
install-test: install
	@want="$(WANT)"; \
	if [ "$$(cat $(TEST_STAMP) 2>/dev/null)" != "$$want" ]; then \
		$(PYTHON) -m pip install -q -e ".[test]" && \
		$(PYTHON) -m pip install -q --no-deps $(NODEPS_SPEC) && echo "$$want" > $(TEST_STAMP); \
	fi

demo: install
	$(VENV)/bin/pagbench demo

test: install-test
	$(PYTHON) -m pytest -q

test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow"

# the reference site (docs/ + mkdocs.yml) into build/site; --strict fails on a broken link
docs: install-test
	$(VENV)/bin/mkdocs build --strict

bench: install-test
	$(PYTHON) benchmarks/evaluation_overhead.py
	$(PYTHON) benchmarks/training_step_cost.py

# Re-evaluate the board's models (zoo models train on first use), add, draw galleries, build the board.
leaderboard: install
	PAGBENCH=$(VENV)/bin/pagbench scripts/build_board.sh

# A single-node Slurm cluster on this machine for `sweep --launcher submitit` (root; apt-get install
# -y slurm-wlm munge); then `export SLURM_CONF=$(SLURM_DIR)/slurm.conf`. The tests start their own.
SLURM_DIR ?= /tmp/pagbench-slurm
slurm-up:
	scripts/slurm_cluster.sh start $(SLURM_DIR)

slurm-down:
	scripts/slurm_cluster.sh stop $(SLURM_DIR)

clean:
	rm -rf .venv build *.egg-info .pytest_cache
