# loco: two commands.
#   make book   create .venv, install pinned dependencies, run every chapter with papermill on its default
#               model (the organisms, their default steps) and build the Jupyter Book into _build/html:
#               `loco reproduce --profile smoke --out _build` (a rerun keeps every chapter whose inputs are unchanged)
#   make test   the book again under a foreign CPU instruction set (`--foreign-cpu`: AVX-512 -> AVX2, else
#               SSE4.1), as on another machine, then the test suite: unit tests, every chapter's checked results
#               compared on that execution (recorded with other float bits: numbers within their measured
#               spread, tests/spread.md), and every kept measurement read, none measured again (each chapter runs once)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PARAMS ?=  # extra papermill parameters for every chapter that has them, e.g. PARAMS="--param SEEDS=[0,1]"
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))
EXECUTED  := $(patsubst notebooks/%.py,_build/src/notebooks/%.ipynb,$(NOTEBOOKS))
# torch is installed first from its pin in pyproject.toml, so pip never pulls a CUDA build.
TORCH_PIN = $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
# open_clip_torch is installed without its dependencies: only its CLIP vocabulary file is read.
VOCAB_PIN = $(shell grep -o '"open_clip_torch==[^"]*"' pyproject.toml | tr -d '"')

.PHONY: book test test-slow install chromium notebooks expectations nbval sync clean
.DELETE_ON_ERROR:

install: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "$(VOCAB_PIN)"
	touch $@

# Each chapter (its jupytext .py is the source of truth) executed once with papermill into _build/src/notebooks;
# the book is built from those executions, and the tests compare them (tests/test_chapter_outputs.py).
notebooks: $(BIN)/.installed
	$(BIN)/loco reproduce --profile smoke --out _build --no-book $(PARAMS)

book: $(BIN)/.installed
	$(BIN)/loco reproduce --profile smoke --out _build $(PARAMS)

# Headless Chromium for tests/test_book_pages.py: Debian's package, installed when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Two pytest workers (pytest-xdist), one torch thread each (tests/conftest.py); a test file stays on one worker.
test: $(BIN)/.installed chromium
	$(BIN)/loco reproduce --profile smoke --out _build --foreign-cpu $(PARAMS)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow" --durations=15 tests

# The full-size architectures with random weights (SD-1.5, SD-XL; PixArt-alpha, SANA in bfloat16): every real-size shape path, about 15 GB.
test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow tests

# Refresh the committed expectations (executed notebooks, images stripped) after a change: prints the
# diff of every chapter's checked results and writes a changed chapter only with APPROVE=1.
expectations: notebooks
	$(BIN)/python tests/make_expectations.py $(if $(APPROVE),--approve) $(EXECUTED)

# nbval proper: re-execute the committed expectations and compare their checked cells (slow; `make test`
# compares the book's own execution instead).
nbval: $(BIN)/.installed
	cd tests/notebooks && ../../$(BIN)/python -m pytest -q -p no:cacheprovider *.ipynb --nbval-lax \
	    --nbval-sanitize-with ../nbval_sanitize.cfg

# Re-pair each notebook's .ipynb (what Colab opens) with its .py source.
sync: $(BIN)/.installed
	$(BIN)/jupytext --sync $(NOTEBOOKS)

clean:
	rm -rf _build
