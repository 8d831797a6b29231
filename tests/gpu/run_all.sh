#!/usr/bin/env bash
# One prepared GPU check, made to finish in well under 10 minutes on an
# H100/H200 machine (Python 3.12 with torch/transformers/pytest, nvcc and
# compute-sanitizer installed, no package registry):
#   1. build + install multienc (CUDA part required) into a fresh target
#      folder from the wheels in .whl/ (tests/gpu/fetch_wheels.sh fetches them)
#   2. tests/gpu: every CUDA op and the whole encoder against the CPU backend
#   3. compute-sanitizer: memcheck on tests/gpu, initcheck and racecheck on the op tests
#      (each without the real-batch sizes of the `large` marker)
#   4. tests/gpu/test_nccl.py: two ranks on the one GPU sum their gradients with NCCL
#      (data-parallel training's GPU path; skipped with its reason when NCCL was not found)
#   5. benchmarks/bench_encoder.py --device cuda --runs $BENCH_RUNS: PyTorch fp32 and bf16 autocast (+ torch.compile)
# Logs and results go to $OUT (default: a new folder under /tmp); a short
# table is printed last. Exit status: 0 only if every step passed.
# On the device tool: run(command="tests/gpu/run_all.sh", carry=[".whl"], timeout_s=600)
# after tests/gpu/fetch_wheels.sh here.
# Env: PYTHON (python3), WHEELS (.whl), SKIP_COMPILE=1 (no torch.compile side), BENCH_RUNS (3; 0: no benchmark),
# NCCL_HOME (default: the image's nvidia-nccl wheel where it has one, else the toolkit's NCCL),
# BUDGET (seconds for all steps together, default 540), REQUIRE_GPU=0 (dry run
# of the flow on a machine without a GPU: the build must still have CUDA).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
py=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
out=${OUT:-$(mktemp -d /tmp/multienc-gpu.XXXXXX)}
site=$(mktemp -d /tmp/multienc-site.XXXXXX)
mkdir -p "$out"
require_gpu=${REQUIRE_GPU:-1}
export PYTHONUNBUFFERED=1 MULTIENC_DEVICE=cuda py repo site wheels require_gpu
deadline=$(($(date +%s) + ${BUDGET:-540}))
declare -a names results times

# step NAME LIMIT_S CMD...: run with a time limit (cut to what is left of BUDGET),
# log to $out/NAME.log, record the outcome
step() {
    local name=$1 limit=$2 t0 rc left
    shift 2
    t0=$(date +%s)
    left=$((deadline - t0))
    if [ "$left" -lt 30 ]; then
        names+=("$name") results+=("not run: out of time") times+=("-")
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    tail -n 25 "$out/$name.log"
    names+=("$name")
    times+=("$(($(date +%s) - t0))s")
    case $rc in
        0) results+=("ok") ;;
        124 | 137) results+=("TIMEOUT") ;;
        *) results+=("FAILED (rc $rc)") ;;
    esac
    return "$rc"
}

install() {
    set -e
    if compgen -G "$wheels/*.whl" >/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
    fi
    export PYTHONPATH=$site
    "$py" -c 'import numpy, setuptools, scipy_openblas32; print("setuptools", setuptools.__version__)' ||
        { echo "missing build requirements: run tests/gpu/fetch_wheels.sh and carry .whl"; return 1; }
    # NCCL for the data-parallel module: the image's nvidia-nccl wheel, else (unset) the toolkit's
    if [ -z "${NCCL_HOME:-}" ]; then
        NCCL_HOME=$("$py" -c 'import importlib.util as u; s = u.find_spec("nvidia.nccl")
print(next(iter(s.submodule_search_locations)) if s else "")' 2>/dev/null) || NCCL_HOME=
        if [ -n "$NCCL_HOME" ]; then export NCCL_HOME; echo "NCCL_HOME=$NCCL_HOME: $(ls "$NCCL_HOME"/lib)"; fi
    fi
    # the op test entry points (multienc.engine._C_tests) too: tests/gpu and the benchmark call them
    MULTIENC_CUDA=1 MULTIENC_TEST_EXTENSION=1 "$py" -m pip install -q --no-index --no-deps --no-build-isolation \
        --no-compile --target "$site" "$repo"
    cd /tmp  # import the installed package, not the source tree
    "$py" -c 'import multienc; i = multienc.build_info(); print(i); assert i["cuda"], "CUDA part not built"
print("cuda_available:", multienc.cuda_available())'
    [ "$require_gpu" = 0 ] || "$py" -c 'import multienc; assert multienc.cuda_available(), "no usable GPU"'
}
export -f install

# tests/gpu compare the GPU with multienc's own CPU backend, so they run under the image's packages:
# --confcutdir keeps out tests/conftest.py, whose pin check is for the CPU suite's references
# (tests/ stays on the path for its helper modules). From /tmp, so that the installed package is
# imported, not the source tree; a plain command line, since compute-sanitizer passes no exported
# shell functions on. The NCCL smoke test runs in its own step: its two rank processes under
# memcheck would take minutes.
gpu_pytest=(env -C /tmp PYTHONPATH="$site:$repo/tests" "$py" -m pytest -q -rs -p no:cacheprovider
    --confcutdir "$repo/tests/gpu")
gpu_tests=("$repo/tests/gpu" --ignore "$repo/tests/gpu/test_nccl.py")

{
    echo "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
    echo "nvcc: $( (command -v nvcc || echo /usr/local/cuda/bin/nvcc) | xargs -I{} sh -c '{} --version 2>&1 | tail -1')"
    echo "python: $("$py" -V 2>&1)"
} | tee "$out/summary.md"

if step build 220 bash -c install; then
    export PYTHONPATH=$site
    step gpu_tests 120 "${gpu_pytest[@]}" "${gpu_tests[@]}"
    # the sanitizers leave out the real-batch sizes (marker `large`); initcheck (reads of memory
    # nothing wrote) and racecheck (shared-memory hazards) take the op tests
    sanitize() {
        local tool=$1 limit=$2
        shift 2
        if command -v compute-sanitizer >/dev/null; then
            step "$tool" "$limit" compute-sanitizer --tool "$tool" --target-processes all --error-exitcode 3 \
                --print-limit 20 "${gpu_pytest[@]}" "$@" -x -m "not large"
        else
            names+=("$tool") results+=("not run: compute-sanitizer not found") times+=("-")
        fi
    }
    sanitize memcheck 180 "${gpu_tests[@]}"
    sanitize initcheck 90 "$repo/tests/gpu/test_cuda_ops.py"
    sanitize racecheck 90 "$repo/tests/gpu/test_cuda_ops.py"
    step nccl 90 "${gpu_pytest[@]}" "$repo/tests/gpu/test_nccl.py"
    compile_flag=--torch-compile
    [ "${SKIP_COMPILE:-0}" = 1 ] && compile_flag=
    # its table lists every run; no --json: the device tool brings back 8 files, and these are the 8
    if [ "${BENCH_RUNS:-3}" != 0 ]; then
        step bench 200 env -C /tmp "$py" "$repo/benchmarks/bench_encoder.py" --device cuda --runs "${BENCH_RUNS:-3}" \
            $compile_flag
    fi
fi

{
    echo
    echo "| step | result | time |"
    echo "|---|---|---|"
    for i in "${!names[@]}"; do echo "| ${names[$i]} | ${results[$i]} | ${times[$i]} |"; done
    grep -E '^\|' "$out/bench.log" 2>/dev/null | grep -v '^| step' || true
    grep -E '^(BERT-base|PyTorch)' "$out/bench.log" 2>/dev/null || true
    grep -E '(passed|failed|error)' "$out/gpu_tests.log" 2>/dev/null | tail -1 || true
    grep -E '(passed|failed|error|skipped)' "$out/nccl.log" 2>/dev/null | tail -1 || true
    for tool in memcheck initcheck racecheck; do
        echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool.log" 2>/dev/null | tail -1)"
    done
} | tee -a "$out/summary.md"
echo "logs: $out"
for r in "${results[@]}"; do [ "$r" = ok ] || exit 1; done
[ "${#results[@]}" -ge $(( ${BENCH_RUNS:-3} == 0 ? 6 : 7 )) ] || exit 1
