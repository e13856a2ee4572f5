# loco: two commands.
#   make book   create .venv, install pinned dependencies, run every notebook with papermill on the
#               default model (the organism `toy`, its default steps), build the Jupyter Book into _build/html
#   make test   the test suite: unit tests, nbval on the notebooks' key outputs, and the book build
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PARAMS ?=  # extra papermill parameters for every notebook, e.g. PARAMS="-p SEEDS [0,1]"
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))
EXECUTED  := $(patsubst notebooks/%.py,_build/src/notebooks/%.ipynb,$(NOTEBOOKS))
# torch is installed first from its pin in pyproject.toml, so pip never pulls a CUDA build.
TORCH_PIN = $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
# open_clip_torch is installed without its dependencies: only its CLIP vocabulary file is read.
VOCAB_PIN = $(shell grep -o '"open_clip_torch==[^"]*"' pyproject.toml | tr -d '"')

.PHONY: book test install notebooks expectations sync clean
.DELETE_ON_ERROR:

install: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "$(VOCAB_PIN)"
	touch $@

# Run each notebook (its jupytext .py is the source of truth) with papermill into the book's staging tree.
_build/src/notebooks/%.ipynb: notebooks/%.py $(BIN)/.installed $(wildcard loco_lib/*.py loco_lib/*/*.py) $(wildcard models/*/training.json)
	@mkdir -p _build/src/notebooks
	$(BIN)/jupytext --quiet --to ipynb -o _build/src/notebooks/$*.source.ipynb $<
	cd notebooks && LOCO_PROGRESS=0 ../$(BIN)/papermill --log-level WARNING -k python3 $(PARAMS) \
	    ../_build/src/notebooks/$*.source.ipynb ../$@
	rm -f _build/src/notebooks/$*.source.ipynb

notebooks: $(EXECUTED)

book: $(EXECUTED)
	rm -rf _build/src/book && cp -r book _build/src/book
	cp _config.yml _toc.yml _build/src/
	$(BIN)/jupyter-book build _build/src --path-output . -W -n --keep-going
	@echo "book: _build/html/index.html"

test: book
	$(BIN)/python -m pytest -q tests --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg

# Refresh the committed nbval expectations (executed notebooks, images stripped) after a change.
expectations: $(EXECUTED)
	$(BIN)/python tests/make_expectations.py $(EXECUTED)

# Re-pair each notebook's .ipynb (what Colab opens) with its .py source.
sync: $(BIN)/.installed
	$(BIN)/jupytext --sync $(NOTEBOOKS)

clean:
	rm -rf _build
