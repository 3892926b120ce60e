# Seeing inside CNNs: the course's commands.
#   make lab    set up (first time only) and open JupyterLab on lesson 00
#   make test   set up (first time only) and run every test
#   make app    the compare dashboard as a standalone app (Voilà), for class
#   make bench  the performance report (ratios to the forward pass; not part of make test)
#   make classroom  what a class costs on a JupyterHub: memory and CPU per student (not part of make test)
#   make mutants  mutation testing: how many small bugs each module's tests catch (long; not part of make test)
# Setting up creates a virtual environment in .venv and installs the course
# (course_utils with its test extras) into it; nothing outside this folder changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lab test app bench classroom mutants slides weights model shortcut debiased notebooks clean

$(STAMP): pyproject.toml binder/overrides.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	# JupyterLab's defaults for a classroom: no "get Jupyter news?" prompt, no update check.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp binder/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	# configurable-http-proxy (Node), for the JupyterHub test (tests/hub), into the venv; skipped without npm.
	if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(VENV)/hub-proxy --no-audit --no-fund --loglevel=error configurable-http-proxy@5 \
	  || echo "npm could not install configurable-http-proxy: the JupyterHub test will be skipped"; fi
	touch $(STAMP)

setup: $(STAMP)

# JupyterLab refuses to run as root unless told to (containers, cloud machines).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab $(ROOT_FLAG) --LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb

# The notebooks' stored outputs must come out the same on any CPU, so `make test` runs
# them a second time on another kernel path: PyTorch's generic kernels (no AVX),
# oneDNN held to SSE4.1, MKL's compatible mode, one thread instead of all cores.
PORTABLE := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1

test: $(STAMP)
	$(BIN)/python -m pytest
	$(PORTABLE) $(BIN)/python -m pytest notebooks

# Every method side by side on one image, as a web app without code (Voilà).
app: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/voila notebooks/compare.ipynb

# Time every method and explorer; writes the table the README shows. Peer libraries
# are timed beside ours when installed: $(BIN)/python -m pip install -e ".[bench]"
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/report.py --markdown tests/benchmarks/latest.md

# Memory per student server and per lesson, CPU seconds per lesson, and how many students at once
# two cores serve with explorer answers under a second (about 30 minutes); the README's classroom table.
classroom: $(STAMP)
	$(BIN)/python tests/benchmarks/classroom.py --markdown tests/benchmarks/classroom.md

# Mutation testing: one small change per mutant, each module's own tests run against it; writes
# the kill score per module and the survivors (tools/mutants.py --help: --module, --max, --list).
# By default a seeded sample of 50 mutants per module (15-30 minutes on 2 cores);
# `make mutants MUTANTS=` runs all 1,700 (about an hour).
MUTANTS ?= --max 50 --seed 1
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py $(MUTANTS) --markdown tests/mutants.md

# Fetch the ImageNet weights (ResNet-18, ResNet-50, VGG-16) once, while online.
weights: $(STAMP)
	$(BIN)/python -m course_utils.download

# Retrain the course model into course_utils/checkpoints/coursenet.pt (seeded, a few minutes on a CPU).
model: $(STAMP)
	$(BIN)/python -m course_utils.train

# Retrain lesson 10's shortcut model (biased scenes; under a minute).
shortcut: $(STAMP)
	$(BIN)/python -m course_utils.train --shortcut

# Retrain the shortcut model's weights on balanced scenes: lesson 10's fix (the course model's recipe; minutes).
debiased: $(STAMP)
	$(BIN)/python -m course_utils.train --debiased

# Re-run every notebook and store its outputs (as an offline machine produces them).
notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py
	$(BIN)/python tools/slides.py

# Set the lessons' slide types for RISE (from their headings and stored pictures).
slides: $(STAMP)
	$(BIN)/python tools/slides.py

clean:
	rm -rf $(VENV)
