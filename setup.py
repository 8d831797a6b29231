"""Build script for multienc's C extensions.

The engine is compiled once, into two static libraries that every extension links (setuptools'
``libraries`` / build_clib, compiled with the extensions' flags and -fPIC):
``multienc_engine`` (every ``*.c`` under ``csrc/`` outside ``csrc/python`` and ``csrc/cuda``: the
model, the CPU backend, the tokenizer; no Python) and ``multienc_bindings`` (the binding helpers
both Python modules use: ``csrc/python/convert.c``, ``csrc/python/device.c``). Everything is
compiled with -fvisibility=hidden, so each extension keeps its own copy private.

The extensions live in the engine package, the only Python that imports them.

``multienc.engine._C``: the binding files of ``csrc/python/`` (module, Encoder, Model, Tokenizer)
linked against those libraries, OpenBLAS from the ``scipy-openblas32`` wheel (found at build time,
located at run time through an rpath relative to the installed package and by
``multienc/engine/native.py``) and OpenMP.

``multienc.engine._C_tests`` (only with MULTIENC_TEST_EXTENSION=1): the op test entry points
(``csrc/python/tests/``), as numpy's ``_multiarray_tests``; ``make build``, ``make sanitize`` and
``tests/gpu/run_all.sh`` set it, a wheel (``tools/build_wheel.py``, ``python -m build``) leaves
it out.

``multienc.engine._C_cuda`` (only when ``nvcc`` is found): the CUDA backend,
``csrc/cuda/*.cu`` compiled by nvcc for sm_80 and sm_90 (plus compute_90 PTX
that newer GPUs compile at load time) with ``csrc/python/cuda_module.c``,
linked against cuBLAS and the static CUDA runtime. It is a separate module so
that ``import multienc`` never needs the CUDA libraries: ``_C`` imports it only
when a CUDA device is asked for (docs/ARCHITECTURE.md, "CUDA backend").

``multienc.engine._C_nccl`` (only when nvcc and NCCL are found: ``nccl.h`` and ``libnccl.so`` in
``$NCCL_HOME`` or the toolkit): NCCL all-reduce over the CUDA backend's buffers for data-parallel
training with one process per GPU (``csrc/python/nccl_module.c``, linked against libnccl). Its
own module, so that single-GPU use never needs libnccl (docs/distributed.md).

Environment:
  MULTIENC_TEST_EXTENSION=1  also build multienc.engine._C_tests (the op test entry points)
  MULTIENC_CUDA=0      skip the CUDA part even where nvcc is found
  MULTIENC_CUDA=1      require it (fail when nvcc is not found)
  CUDA_HOME            toolkit folder to take nvcc from when it is not on PATH
  NCCL_HOME            folder with include/nccl.h and lib/libnccl.so or lib/libnccl.so.2 (the
                       nvidia-nccl wheel's nvidia/nccl; default: the toolkit's)
  MULTIENC_NCCL=0|1    skip / require the NCCL module (default: build it when NCCL is found)
  MULTIENC_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer
                       (CPU only: the CUDA part is skipped)
  MULTIENC_DEBUG=1     -O0 -g

C files are compiled side by side, up to one per CPU (at most 8), the static libraries' files as
well as the extensions.
"""
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sysconfig

import numpy
import scipy_openblas32
from setuptools import Extension, setup
from setuptools.command.build_clib import build_clib
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
SANITIZE = os.environ.get("MULTIENC_SANITIZE") == "1"
DEBUG = os.environ.get("MULTIENC_DEBUG") == "1"
TEST_EXTENSION = os.environ.get("MULTIENC_TEST_EXTENSION") == "1"
CUDA_ARCHS = ("80", "90")
PYTHON_DIR = os.path.join("csrc", "python")
CUDA_ONLY_C = os.path.join(PYTHON_DIR, "cuda_module.c")
NCCL_ONLY_C = os.path.join(PYTHON_DIR, "nccl_module.c")
JOBS = min(os.cpu_count() or 1, 8)
SHARED_BINDINGS = [os.path.join(PYTHON_DIR, "convert.c"), os.path.join(PYTHON_DIR, "device.c")]
HEADERS = sorted(glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True))


def c_files(folder, recursive=False):
    pattern = os.path.join(folder, "**", "*.c") if recursive else os.path.join(folder, "*.c")
    return sorted(glob.glob(pattern, recursive=recursive))


def engine_sources():
    """Every C file of the engine: csrc/ outside the bindings and the CUDA part."""
    skip = (PYTHON_DIR + os.sep, os.path.join("csrc", "cuda") + os.sep)
    return [f for f in c_files("csrc", recursive=True) if not f.startswith(skip)]


def core_binding_sources():
    """multienc.engine._C's own binding files."""
    return [f for f in c_files(PYTHON_DIR) if f not in SHARED_BINDINGS and f not in (CUDA_ONLY_C, NCCL_ONLY_C)]


def find_nvcc():
    """Path of nvcc, or None when the CUDA part is not to be built."""
    want = os.environ.get("MULTIENC_CUDA", "")
    if want == "0":
        return None
    if SANITIZE:  # ASan's shadow memory and the CUDA driver's mappings do not mix
        return None
    candidates = [shutil.which("nvcc")]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates.append(os.path.join(root, "bin", "nvcc"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return os.path.realpath(c)
    if want == "1":
        raise SystemExit("MULTIENC_CUDA=1 but nvcc was not found (put it on PATH or set CUDA_HOME)")
    return None


def cuda_layout(nvcc):
    """(toolkit version "X.Y", include dir, library dir) of the toolkit holding nvcc."""
    out = subprocess.run([nvcc, "--version"], check=True, capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    if not m:
        raise SystemExit(f"cannot read the CUDA version from `{nvcc} --version`:\n{out}")
    root = os.path.dirname(os.path.dirname(nvcc))
    libdirs = [os.path.join(root, d) for d in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"))]
    libdir = next((d for d in libdirs if os.path.exists(os.path.join(d, "libcublas.so"))), None)
    if libdir is None:
        raise SystemExit(f"nvcc found at {nvcc}, but no libcublas.so in {', '.join(libdirs)}")
    return m.group(1), os.path.join(root, "include"), libdir


def find_nccl(cuda_include, cuda_libdir):
    """(include dir, library dir, linker flag) of NCCL, or None when the NCCL module is not to be built.
    The toolkit has libnccl.so; the nvidia-nccl wheel (NCCL_HOME=.../site-packages/nvidia/nccl) only
    libnccl.so.2, which is linked by its file name."""
    want = os.environ.get("MULTIENC_NCCL", "")
    if want == "0":
        return None
    home = os.environ.get("NCCL_HOME")
    places = [(os.path.join(home, "include"), os.path.join(home, "lib"))] if home else []
    places.append((cuda_include, cuda_libdir))
    for inc, lib in places:
        if not os.path.exists(os.path.join(inc, "nccl.h")):
            continue
        for name, flag in (("libnccl.so", "-lnccl"), ("libnccl.so.2", "-l:libnccl.so.2")):
            if os.path.exists(os.path.join(lib, name)):
                return inc, lib, flag
    if want == "1":
        raise SystemExit("MULTIENC_NCCL=1 but nccl.h and libnccl.so(.2) were not found (set NCCL_HOME)")
    return None


def compile_args(extra=()):
    args = ["-std=c11", "-fopenmp", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter",
            "-Wno-missing-field-initializers", "-fno-strict-aliasing",
            "-DBLAS_SYMBOL_PREFIX=scipy_",
            # libm's sqrtf sets errno on negative input, a side effect that keeps GCC from
            # vectorising a loop that calls it: AdamW ran scalar (2.5x slower). Nothing here reads
            # errno; sqrt and division stay correctly rounded, so the results do not change.
            "-fno-math-errno", *extra]
    if SANITIZE:
        args += ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                 "-fno-omit-frame-pointer"]
    elif DEBUG:
        args += ["-O0", "-g"]
    else:
        args += ["-O3"]
    return args


def link_args():
    libdir = scipy_openblas32.get_lib_dir()
    args = ["-fopenmp", f"-L{libdir}", f"-l{scipy_openblas32.get_library()}",
            "-Wl,-rpath,$ORIGIN/../../scipy_openblas32/lib", f"-Wl,-rpath,{libdir}"]
    if SANITIZE:
        args += ["-fsanitize=address,undefined"]
    return args


class BuildClib(build_clib):
    """build_clib whose compiler compiles a library's sources side by side (setuptools compiles
    them one after the other)."""

    def build_libraries(self, libraries):
        one_by_one = self.compiler.compile

        def side_by_side(sources, **kwargs):
            with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
                return [obj for objs in pool.map(lambda src: one_by_one([src], **kwargs), sources) for obj in objs]

        self.compiler.compile = side_by_side
        try:
            super().build_libraries(libraries)
        finally:
            del self.compiler.compile  # the class's method again


class BuildExt(build_ext):
    """build_ext that builds the static engine libraries first (also for ``build_ext --inplace``,
    which does not run build_clib), relinks an extension when they changed, and compiles an
    extension's ``cuda_sources`` with nvcc."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # extensions side by side unless -j says otherwise
            self.parallel = JOBS

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()

    def build_extension(self, ext):
        if self.distribution.has_c_libraries():
            clib = self.get_finalized_command("build_clib")
            ext.depends = ext.depends + [os.path.join(clib.build_clib, self.compiler.library_filename(name))
                                         for name in clib.get_library_names()]
        cu = getattr(ext, "cuda_sources", None)
        if cu:
            ext.extra_objects = [self.nvcc_compile(src, ext) for src in cu]
        super().build_extension(ext)

    def nvcc_compile(self, src, ext):
        obj = os.path.join(self.build_temp, "cuda", os.path.basename(src) + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        deps = [src, *ext.depends]
        if not self.force and os.path.exists(obj) and \
                os.path.getmtime(obj) >= max(os.path.getmtime(d) for d in deps):
            return obj
        gencode = []
        for a in CUDA_ARCHS:
            gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        gencode += ["-gencode", f"arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}"]
        opt = ["-O0", "-g", "-G"] if DEBUG else ["-O3", "-lineinfo"]
        cmd = [ext.nvcc, "-std=c++20", *opt, *gencode, "-Xcompiler", "-fPIC,-Wall",
               "-Icsrc", "-c", src, "-o", obj]
        print(" ".join(cmd))
        subprocess.run(cmd, check=True, cwd=HERE)
        return obj


def extensions():
    nvcc = find_nvcc()
    c_defines = []
    exts = []
    if nvcc:
        version, cuda_include, libdir = cuda_layout(nvcc)
        archs = ",".join(f"sm_{a}" for a in CUDA_ARCHS)
        c_defines = ["-DMULTIENC_WITH_CUDA", f'-DMULTIENC_CUDA_VERSION="{version}"',
                     f'-DMULTIENC_CUDA_ARCHS="{archs}"']
        major = version.split(".")[0]
        cuda = Extension(
            "multienc.engine._C_cuda",
            sources=[CUDA_ONLY_C],
            include_dirs=["csrc"],
            extra_compile_args=compile_args(),
            # static CUDA runtime (it loads the driver itself); cuBLAS from the toolkit or
            # from the nvidia-cublas wheel beside the package
            extra_link_args=[f"-L{libdir}", "-lcublas", "-lcudart_static", "-lstdc++", "-lrt", "-lpthread", "-ldl",
                             f"-Wl,-rpath,{libdir}", f"-Wl,-rpath,$ORIGIN/../../nvidia/cu{major}/lib",
                             "-Wl,-rpath,$ORIGIN/../../nvidia/cublas/lib"],
            # the .cu files too: setuptools relinks only when a dependency is newer than the module
            depends=HEADERS + sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu*"))),
        )
        cuda.cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        cuda.nvcc = nvcc
        exts.append(cuda)
        nccl = find_nccl(cuda_include, libdir)
        if nccl:
            exts.append(Extension(
                "multienc.engine._C_nccl",
                sources=[NCCL_ONLY_C],
                include_dirs=["csrc", nccl[0], cuda_include],
                extra_compile_args=compile_args(),
                extra_link_args=[f"-L{nccl[1]}", nccl[2], f"-Wl,-rpath,{nccl[1]}",
                                 "-Wl,-rpath,$ORIGIN/../../nvidia/nccl/lib"],
                depends=HEADERS,
            ))
    include_dirs = ["csrc", numpy.get_include(), scipy_openblas32.get_include_dir()]
    core = Extension(
        "multienc.engine._C",
        sources=core_binding_sources(),
        include_dirs=include_dirs,
        extra_compile_args=compile_args(c_defines),
        extra_link_args=link_args(),
        depends=HEADERS,
    )
    exts = [core, *exts]
    if TEST_EXTENSION:
        exts.append(Extension(
            "multienc.engine._C_tests",
            sources=c_files(os.path.join(PYTHON_DIR, "tests")),
            include_dirs=include_dirs,
            extra_compile_args=compile_args(c_defines),
            extra_link_args=link_args(),
            depends=HEADERS,
        ))
    # compiled once, linked into every extension (in this order: the bindings call the engine);
    # build_clib adds no Python headers: only the bindings get them, the engine cannot include them
    lib = {"cflags": compile_args(c_defines), "obj_deps": {"": HEADERS}}
    python_include = sorted({sysconfig.get_paths()["include"], sysconfig.get_paths()["platinclude"]})
    libraries = [("multienc_bindings", {"sources": SHARED_BINDINGS, "include_dirs": include_dirs + python_include,
                                        **lib}),
                 ("multienc_engine", {"sources": engine_sources(), "include_dirs": ["csrc",
                                      scipy_openblas32.get_include_dir()], **lib})]
    return exts, libraries


exts, libraries = extensions()
setup(ext_modules=exts, libraries=libraries, cmdclass={"build_clib": BuildClib, "build_ext": BuildExt})
