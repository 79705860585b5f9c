# `make run`: set up .venv and run the paper's ablation on the built-in benchmark.
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where pip takes torch from (empty: the configured indexes). On a machine without a GPU
# whose pip reaches PyPI, TORCH_INDEX=https://download.pytorch.org/whl/cpu gets the small
# CPU build instead of PyPI's CUDA build of several GB.
TORCH_INDEX ?=

.PHONY: run test browser postgres lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The exact torch first: a looser pin lets pip pick a newer, multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/prefuse run --out runs/default --overwrite

# The report test opens report.html in Debian's headless Chromium; install it when missing.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "could not install chromium: the browser test will be skipped"

# The tune test starts a throwaway PostgreSQL server (initdb, pg_ctl); install it when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		{ apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
		echo "could not install postgresql: the PostgreSQL test will be skipped"

test: $(STAMP) browser postgres
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools

bench: $(STAMP)
	$(BIN)/python bench/cost.py

clean:
	rm -rf $(VENV) runs
