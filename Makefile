# A newcomer's two commands:
#   make book   set up .venv (torch, then requirements.txt), then build the book at lab scale -> _build/html
#   make test   unit tests + every chapter executed at ci scale (what CI runs)
# torch: this machine and CI take the CPU build on local disk with torch==2.13.0. Elsewhere pick a build, e.g.
#   make book TORCH="torch --index-url https://download.pytorch.org/whl/cpu"     (CPU only, small)
#   make book TORCH="torch --index-url https://download.pytorch.org/whl/cu126"   (CUDA 12.6)
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: book test setup
book: setup
	$(BIN)/python scripts/book.py book

test: setup
	IMITLIB_SCALE=$${IMITLIB_SCALE:-ci} $(BIN)/python scripts/book.py test

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@
