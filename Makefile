# Two commands for a fresh machine (Python 3.11 + pip):
#   make run    executes every notebook, regenerates figures/ and the claims report
#   make test   unit tests + every notebook under nbval
# and, for the committed reference results (hours on 2 CPU cores; see README):
#   make reference   every experiment at its reference scale -> figures/results/*__reference.json
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
NBVAL_OPTS := --nbval --nbval-sanitize-with=notebooks/nbval_sanitize.cfg --nbval-cell-timeout=900
# One persistent XLA compilation cache for a whole run: the browser tests, nbval and the unit tests
# compile many of the same programs (a loaded executable computes exactly what a fresh compile
# would), and compiling dominates the quick runs of the shaping notebooks on a 2-core CPU.
export JAX_COMPILATION_CACHE_DIR ?= $(abspath $(VENV))/jax-cache
# Cache every compiled program, not only those that took over a second to compile: the notebooks'
# small programs are compiled again by nbval after the browser tests, and by the widgets.
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0
# Tests and notebooks run in this many processes (pytest-xdist); each notebook's cells stay in one.
JOBS ?= 2
PYTEST_JOBS := -n $(JOBS)

.PHONY: run test unit notebooks claims reference install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3
	# JupyterLab without its news pop-up (it asks on first start and would cover the notebook)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	# and without autosave (the browser tests run notebooks there: their saved outputs must stay as committed)
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}, "@jupyterlab/docmanager-extension:plugin": {"autosave": false}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

run: install
	printf '%s\n' $(NOTEBOOKS) | xargs -P $(JOBS) -I{} $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=3600 --ExecutePreprocessor.kernel_name=python3 {}
	$(PY) -m lowrank_es claims --json figures/claims.json --md figures/claims.md --png figures/claims.png

test: install
	$(PY) -m pytest -q $(PYTEST_JOBS) --durations=15 --timings-record figures/results/timings.json \
		tests $(NBVAL_OPTS) $(NOTEBOOKS)

unit: install
	$(PY) -m pytest -q $(PYTEST_JOBS) tests

notebooks: install
	$(PY) -m pytest -q $(PYTEST_JOBS) $(NBVAL_OPTS) $(NOTEBOOKS)

reference: install
	$(PY) -m lowrank_es run all --scale reference
	$(PY) -m lowrank_es list

claims: install
	$(PY) -m lowrank_es claims --json figures/claims.json --md figures/claims.md --png figures/claims.png

clean:
	rm -rf $(VENV)
