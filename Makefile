# The two commands at the top of README.md: `make demo` and `make test`.
# Each creates .venv when it is missing and installs what it needs.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CONSTRAINTS := constraints.txt
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Stock Debian/Ubuntu Pythons lack venv (ensurepip) until python3-venv is in.
CHECK_VENV = $(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
  echo "error: '$(PYTHON) -m venv' is unavailable. On Debian/Ubuntu install it with:"; \
  echo "    sudo apt-get install python3-venv"; \
  exit 1; }

.PHONY: demo test test-parts lint docs pytest-tf pytest-jax test-torch test-oldest test-browser \
  browser-programs bench bench-long soak

$(PY):
	@$(CHECK_VENV)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[plot]"
	touch $@

# (A command with a comma reaches `timed` through a variable.)
INSTALL_TEST = $(PIP) install -c $(CONSTRAINTS) -e ".[test,plot,docs]"
$(VENV)/.installed-test: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	@$(call timed,install-venv,$(INSTALL_TEST))
	touch $@ $(VENV)/.installed-demo

# `--overwrite`: a second `make demo` replaces ./demo-output (and says so),
# where the command line alone refuses a folder holding a demo's files.
demo: $(VENV)/.installed-demo
	$(PY) -m keras_attention demo --overwrite

lint: $(VENV)/.installed-test
	@$(call timed,lint,$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .)

# The documentation site (mkdocs.yml) into site/: the API reference from the
# docstrings, read by griffe without importing the package, the notebooks
# with their committed outputs, the guides. Strict, here and in `make test`:
# a warning (a broken link, a docstring section griffe cannot match to the
# signature, a page missing from the nav) fails the build. A public name
# without a page fails tests/package/docs_test.py.
DOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
docs: $(VENV)/.installed-test
	@$(call timed,docs,$(DOCS_BUILD))

# The whole suite on TensorFlow, then every test that is not TensorFlow-only
# or a once-per-run end-to-end check (demo, notebook, packaging) on JAX.
# Each session trains at most one model. The TensorFlow run executes the
# walkthrough notebook (nbmake: a cell that raises fails the run), the JAX
# run the translation notebook; a test marked `trains(NAME)` runs only in the
# session given `--trains NAME` (tests/conftest.py): PyTorch trains the
# reversal demo, the oldest versions the generate demo. Naming paths replaces
# testpaths, hence `tests`.
pytest-tf: $(VENV)/.installed-test
	@$(call timed,pytest-tf,$(TEST_ENV) KERAS_BACKEND=tensorflow $(PY) -m pytest $(PYTEST_FLAGS) \
	  --durations=15 --nbmake tests notebooks/walkthrough.ipynb)

pytest-jax: $(VENV)/.installed-test
	@$(call timed,pytest-jax,$(TEST_ENV) KERAS_BACKEND=jax $(PY) -m pytest $(PYTEST_FLAGS) \
	  --durations=10 -m "not tensorflow_only and not end_to_end and not backend_neutral" \
	  --nbmake tests notebooks/translation.ipynb)

# README's test command, and all CI runs (.ci/run): lint, TensorFlow, JAX,
# PyTorch and the declared oldest versions, each venv installed when missing.
# Two parts run at a time: one pytest session keeps about 1.3 of the two
# cores busy (Python, tracing and compiling are single-threaded), so a second
# one fills the rest. Each part's output is printed whole when it ends
# (--output-sync), and at the end the time of each part and of the whole.
# The venvs install side by side with each other and with the test
# sessions.
test:
	@rm -rf $(TIMES) && mkdir -p $(TIMES) && date +%s > $(TIMES)/start
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-parts; \
	status=$$?; \
	echo; echo "make test: the time of each part (two at a time), exit status"; \
	cat $(TIMES)/*.txt 2>/dev/null; \
	echo "make test: $$(( $$(date +%s) - $$(cat $(TIMES)/start) )) s in all"; \
	exit $$status

test-parts: lint pytest-tf docs pytest-jax test-torch test-oldest

# `$(call timed,NAME,COMMAND)`: runs COMMAND and records its wall time and
# exit status in $(TIMES)/NAME.txt for `make test`'s summary.
TIMES := .test-times
timed = mkdir -p $(TIMES); start=$$(date +%s); $(2); status=$$?; \
  echo "  $(1): $$(( $$(date +%s) - start )) s, exit $$status" > $(TIMES)/$(1).txt; \
  exit $$status
# No cache folder: two sessions run side by side in this checkout.
PYTEST_FLAGS := -p no:cacheprovider
# The test sessions compile with XLA's code generator at its lowest
# optimization level: the tests check what the programs compute, which the
# HLO fixes (the level changes only how the machine code is optimized), and
# they compile far more programs than they run long ones (JAX about 15 %,
# TensorFlow's XLA kernels about 10 % less time). Benchmarks and users keep
# XLA's defaults.
TEST_ENV := XLA_FLAGS=--xla_backend_optimization_level=0

# The layer tests on PyTorch, in their own venv. `torch==2.13.0` is the CPU
# build; a bare `pip install torch` would download a multi-GB CUDA build.
# The torch and oldest venvs do not install the package: they install its
# requirements (setup.cfg, printed by .ci/requirements.py) and find it in the
# checkout through a .pth file. An install would write the package's
# egg-info into the checkout while .venv's install writes it too; this way
# the three venvs install side by side.
LINK_CHECKOUT = $(1)/bin/python -c "import os, sysconfig; open(os.path.join( \
  sysconfig.get_paths()['purelib'], 'keras_attention_checkout.pth'), 'w').write(os.getcwd())"
TORCH_VENV := .venv-torch
# Only what the torch run uses: not jax, LiteRT, nbmake, ruff or build.
INSTALL_TORCH = $(TORCH_VENV)/bin/python -m pip --disable-pip-version-check -q \
  install torch==2.13.0 && $(TORCH_VENV)/bin/python -m pip \
  --disable-pip-version-check -q install -c $(CONSTRAINTS) \
  $$($(PYTHON) .ci/requirements.py plot) pytest hypothesis \
  && $(call LINK_CHECKOUT,$(TORCH_VENV))
$(TORCH_VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	@$(CHECK_VENV)
	$(PYTHON) -m venv $(TORCH_VENV)
	@$(call timed,install-torch,$(INSTALL_TORCH))
	touch $@

# One OpenMP thread: PyTorch's threads spin while they wait, and beside
# another session on two cores that made this run several times slower
# (the whole run alone: 37 s; beside the JAX session: 208 s).
test-torch: $(TORCH_VENV)/.installed
	@$(call timed,test-torch,OMP_NUM_THREADS=1 KERAS_BACKEND=torch $(TORCH_VENV)/bin/python -m pytest \
	  $(PYTEST_FLAGS) -m "not tensorflow_only and not end_to_end and not backend_neutral" \
	  --trains reversal-demo)

# The layer tests with the declared minimum versions (setup.cfg) pinned, and
# every other package of that venv pinned in constraints-oldest.txt.
OLDEST_VENV := .venv-oldest
OLDEST_CONSTRAINTS := constraints-oldest.txt
$(OLDEST_VENV)/.installed: setup.cfg pyproject.toml $(OLDEST_CONSTRAINTS)
	@$(CHECK_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	@$(call timed,install-oldest,$(OLDEST_VENV)/bin/python -m pip --disable-pip-version-check -q install \
	  -c $(OLDEST_CONSTRAINTS) "keras==3.9.0" "tensorflow==2.16.1" \
	  "scipy==1.10.0" numpy pytest hypothesis matplotlib \
	  && $(call LINK_CHECKOUT,$(OLDEST_VENV)))
	touch $@

test-oldest: $(OLDEST_VENV)/.installed
	@$(call timed,test-oldest,$(TEST_ENV) KERAS_BACKEND=tensorflow $(OLDEST_VENV)/bin/python -m pytest \
	  $(PYTEST_FLAGS) -m "not end_to_end" --ignore=tests/package/export_test.py \
	  --trains generate-demo)

# Not part of `make test`: attention_html's page and the documentation site
# (built first by `make docs`; screenshots in browser-screenshots/) in headless
# Chromium (tests/browser, which pytest does not collect otherwise), driven by selenium
# from its own venv (selenium and its dependencies pinned in constraints.txt;
# it finds Debian's chromedriver, downloads none). Debian's chromium and chromium-driver must be installed
# first: a make target does not call sudo, it says what to install.
BROWSER_VENV := .venv-browser
browser-programs:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "error: make test-browser needs chromium and chromedriver. On Debian/Ubuntu:"; \
	  echo "    sudo apt-get install chromium chromium-driver"; \
	  exit 1; }

$(BROWSER_VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	@$(CHECK_VENV)
	$(PYTHON) -m venv $(BROWSER_VENV)
	$(BROWSER_VENV)/bin/python -m pip --disable-pip-version-check -q install \
	  -c $(CONSTRAINTS) -e . pytest selenium
	touch $@

# browser-programs first (also under make -j): no venv is built without them.
test-browser: browser-programs
	$(MAKE) --no-print-directory $(BROWSER_VENV)/.installed docs
	KERAS_BACKEND=tensorflow $(BROWSER_VENV)/bin/python -m pytest tests/browser

# Benchmarks (not tests; see benchmarks/RESULTS.md). Run them on a quiet
# machine only: each table records the evidence (matmul at the start, between
# sections and at the end; the CPU other processes used) and says "NOT QUIET"
# when it is missing. `bench`: speed side by side with
# keras.layers.MultiHeadAttention and memory up to T=16384, on TensorFlow,
# JAX and PyTorch, and what the attention patterns' skipped tiles buy
# (packed documents, chunks, a window with global tokens); it ends with one
# line per target (met / missed, figure, spread). `bench-long`: the memory of the largest cases, T=32768 and 65536.
# The peers measured against (keras-hub, networkx) come with the `bench`
# extra, installed into .venv only here.
$(VENV)/.installed-bench: $(PY) setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[test,plot,bench]"
	touch $@ $(VENV)/.installed-test $(VENV)/.installed-demo

bench: $(VENV)/.installed-bench $(TORCH_VENV)/.installed
	rm -rf benchmarks/last
	$(PY) benchmarks/speed.py --backend tensorflow
	$(PY) benchmarks/memory.py --backend tensorflow --lengths 4096 8192 16384
	$(PY) benchmarks/memory.py --backend tensorflow --gqa 8192
	KERAS_BACKEND=tensorflow $(PY) benchmarks/decoding.py
	$(PY) benchmarks/prefill.py --backend tensorflow
	$(PY) benchmarks/prefill.py --backend jax
	$(PY) benchmarks/varying_lengths.py
	$(PY) benchmarks/patterns.py --backend tensorflow --memory
	$(PY) benchmarks/patterns.py --backend jax --memory
	$(PY) benchmarks/speed.py --backend jax --quick
	$(PY) benchmarks/memory.py --backend jax --lengths 4096 8192 16384
	$(TORCH_VENV)/bin/python benchmarks/speed.py --backend torch --quick
	$(TORCH_VENV)/bin/python benchmarks/memory.py --backend torch --lengths 4096 8192 16384
	$(PY) benchmarks/attention_flow.py
	@echo; echo "Targets:"; cat benchmarks/last/*.txt

bench-long: $(VENV)/.installed-test $(TORCH_VENV)/.installed
	rm -rf benchmarks/last
	$(PY) benchmarks/memory.py --backend tensorflow --lengths 32768 65536
	$(PY) benchmarks/memory.py --backend jax --lengths 32768 65536
	$(TORCH_VENV)/bin/python benchmarks/memory.py --backend torch --lengths 32768 65536
	@echo; echo "Targets:"; cat benchmarks/last/memory-*.txt

# Not part of `make test`: 1,000 training steps of the toy model on random
# lengths and padding; fails on a non-finite loss or on RSS growth > 5 %
# between step 100 and the last step. Figures: benchmarks/RESULTS.md.
soak: $(VENV)/.installed-demo
	$(PY) benchmarks/soak.py
