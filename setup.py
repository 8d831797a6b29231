"""Build script for multienc's C extension ``multienc._C``.

Every ``*.c`` file under ``csrc/`` (except ``csrc/cuda``) is compiled into one
extension linked against OpenBLAS from the ``scipy-openblas32`` wheel (found
at build time, located at run time through an rpath relative to the installed
package and by ``multienc/_blas.py``) and OpenMP.

Environment:
  MULTIENC_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer
  MULTIENC_DEBUG=1     -O0 -g
"""
import glob
import os

import numpy
import scipy_openblas32
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def c_sources():
    files = sorted(glob.glob(os.path.join("csrc", "**", "*.c"), recursive=True))
    return [f for f in files if not f.startswith(os.path.join("csrc", "cuda"))]


def compile_args():
    args = ["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter",
            "-Wno-missing-field-initializers", "-fno-strict-aliasing",
            "-DBLAS_SYMBOL_PREFIX=scipy_"]
    if os.environ.get("MULTIENC_SANITIZE") == "1":
        args += ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                 "-fno-omit-frame-pointer"]
    elif os.environ.get("MULTIENC_DEBUG") == "1":
        args += ["-O0", "-g"]
    else:
        args += ["-O3"]
    return args


def link_args():
    libdir = scipy_openblas32.get_lib_dir()
    args = ["-fopenmp", f"-L{libdir}", f"-l{scipy_openblas32.get_library()}",
            "-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib", f"-Wl,-rpath,{libdir}"]
    if os.environ.get("MULTIENC_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined"]
    return args


ext = Extension(
    "multienc._C",
    sources=c_sources(),
    include_dirs=[os.path.join("csrc"), numpy.get_include(), scipy_openblas32.get_include_dir()],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
    depends=sorted(glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True)),
)

setup(ext_modules=[ext])
