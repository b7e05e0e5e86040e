# The two commands at the top of README.md: `make demo` and `make test`.
# Each creates .venv when it is missing and installs what it needs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CONSTRAINTS := constraints.txt
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint pytest-tf pytest-jax soak

$(PY):
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  echo "error: '$(PYTHON) -m venv' is unavailable. On Debian/Ubuntu install it with:"; \
	  echo "    sudo apt-get install python3-venv"; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[plot]"
	touch $@

$(VENV)/.installed-test: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[test,plot]"
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(PY) -m keras_attention demo

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite on TensorFlow, then every test that is not TensorFlow-only
# or a once-per-run end-to-end check (demo, notebook, packaging) on JAX.
pytest-tf: $(VENV)/.installed-test
	KERAS_BACKEND=tensorflow $(PY) -m pytest

pytest-jax: $(VENV)/.installed-test
	KERAS_BACKEND=jax $(PY) -m pytest -m "not tensorflow_only and not end_to_end"

test: lint pytest-tf pytest-jax

# Not part of `make test`: 1,000 training steps of the toy model on random
# lengths and padding; fails on a non-finite loss or on RSS growth > 5 %
# between step 100 and the last step. Figures: benchmarks/RESULTS.md.
soak: $(VENV)/.installed-demo
	$(PY) benchmarks/soak.py
