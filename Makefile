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

.PHONY: install demo test test-fast bench leaderboard clean

install:
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@want="$(CURDIR) $$(cat pyproject.toml Makefile | sha256sum | cut -c1-16)"; \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
		$(PYTHON) -m pip install -q --upgrade pip && \
		($(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PYTHON) -m pip install -q $(TORCH_SPEC)) && \
		$(PYTHON) -m pip install -q -e ".[test]" && \
		$(PYTHON) -m pip install -q --no-deps $(NODEPS_SPEC) && echo "$$want" > $(STAMP); \
	fi

demo: install
	$(VENV)/bin/pagbench demo

test: install
	$(PYTHON) -m pytest -q

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"

bench: install
	$(PYTHON) benchmarks/evaluation_overhead.py
	$(PYTHON) benchmarks/training_step_cost.py

# Re-evaluate the board's models (zoo models train on first use), add, draw galleries, build the board.
leaderboard: install
	PAGBENCH=$(VENV)/bin/pagbench scripts/build_board.sh

clean:
	rm -rf .venv build *.egg-info .pytest_cache
