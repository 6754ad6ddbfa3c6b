# course_ddpm — two commands:
#   make lab    set up (once), then open the notebooks in JupyterLab
#   make test   set up (once), then run the tests and execute every notebook (nbval)
#
# Setup = a virtual environment in $(VENV), the package installed editable with its test
# tools (again only when pyproject.toml changes), and MNIST prepared (see
# `python -m course_ddpm.data`; set COURSE_DDPM_DATA to use a folder of .gz files offline).
#
# Knobs:  make test PYTHON=python3.12 VENV=.venv PIP_ARGS="--index-url ..." TESTS=tests/test_data.py
#
# For contributors (README, "Editing the notebooks"):
#   make sync        bring each notebooks/NN_*.py text twin and its .ipynb in step (jupytext)
#   make notebooks   re-execute every notebook in order, storing outputs and measured runtimes
#   make check-cpu   nbval again under torch's plain kernels (ATEN_CPU_CAPABILITY=default), with
#                    1 and with 4 threads: the stored outputs must not depend on the CPU
#   make student     write student/NN_name.ipynb: the notebooks with the exercises' solutions removed
#   make lab LAB_DIR=notebooks   open the complete course (with solutions) instead of student/

PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
TESTS ?= tests/
# pytest-timeout limits, in seconds, per test and per notebook cell: generous (5-10x what
# a 2-core laptop needs), so that only a hang trips them.
TEST_TIMEOUT ?= 900
CELL_TIMEOUT ?= 1800

# torch's OpenMP threads spin while they wait; when anything else runs on the cores (a
# browser, a second kernel, a busy laptop) that made notebook cells 10-75x slower here.
# PASSIVE lets them sleep instead; it must be set before torch is imported.
export OMP_WAIT_POLICY ?= PASSIVE

PY := $(VENV)/bin/python
STAMP := $(VENV)/.course_ddpm-installed
SANITIZE := $(wildcard notebooks/nbval_sanitize.cfg)

.PHONY: lab test setup data sync notebooks check-cpu student

# Students work in student/ (exercises to fill in); notebooks/ is the complete course with solutions.
LAB_DIR ?= student

lab: setup
	@echo "Opening $(LAB_DIR)/ -- students: work in student/ (the exercises, solutions removed);"
	@echo "notebooks/ holds the complete course with solutions (make lab LAB_DIR=notebooks)."
	$(VENV)/bin/jupyter lab $(LAB_DIR)/

NBVAL := $(PY) -m pytest --nbval --nbval-current-env notebooks/ \
	$(if $(SANITIZE),--nbval-sanitize-with $(SANITIZE)) \
	--nbval-cell-timeout=$(CELL_TIMEOUT) --timeout=$(CELL_TIMEOUT)

# pytest's exit code 5 means "no notebook collected yet" (4: no notebooks/ folder): not a failure.
test: setup
	$(PY) -m pytest $(TESTS) --timeout=$(TEST_TIMEOUT)
	@echo '$(NBVAL)'; $(NBVAL); rc=$$?; \
	if [ $$rc -eq 5 ] || [ $$rc -eq 4 -a ! -d notebooks ]; then echo "no notebooks yet: nbval had nothing to run"; rc=0; fi; \
	exit $$rc

sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb

notebooks: setup
	$(PY) scripts/execute_notebooks.py
	$(PY) scripts/make_student_notebooks.py

# The student versions are generated from notebooks/ (never edited by hand); tests check they are current.
student: $(STAMP)
	$(PY) scripts/make_student_notebooks.py

# The stored outputs were made on one CPU; they must hold on any other. torch's plain
# (non-vectorised) kernels and other thread counts change the round-off, as another CPU would.
check-cpu: setup
	ATEN_CPU_CAPABILITY=default COURSE_DDPM_THREADS=1 $(NBVAL)
	ATEN_CPU_CAPABILITY=avx2 COURSE_DDPM_THREADS=4 $(NBVAL)

# --- internal steps (`make lab` and `make test` run them) ---------------------------------

setup: $(STAMP) data

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "course_ddpm needs Python >= 3.10; $(PYTHON) is $$($(PYTHON) -V 2>&1). Try: make PYTHON=python3.12 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml is newer than the stamp: a second `make` is instant.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_ARGS) -e ".[test]"
	@touch $@

# Copies/un-gzips (or downloads) MNIST; a no-op when it is ready. Offline without the
# files it says where to put them and carries on (tests that need MNIST then skip),
# unless COURSE_DDPM_REQUIRE_MNIST=1 (CI), which makes it an error.
data: $(STAMP)
	@$(PY) -m course_ddpm.data || [ "$${COURSE_DDPM_REQUIRE_MNIST:-0}" != 1 ]
