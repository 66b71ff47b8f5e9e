#!/bin/bash
# The GPU decoder on the GPU machine: build, GPU tests, the whole-model benchmark (tests/gpu/bench_model.c) and the
# PyTorch peer (../shared/baselines/torch_*.py, carried in .deps/) in the same call, so that ratios are measured side
# by side. Run from the repository root under the carried Debian packages:
#   bash .deps/with-deps.sh bash tests/gpu/run_model.sh [--tests all|model|none] [--bench none|quick|full|ROW,ROW]
#        [--torch] [--memcheck] [--precision fp32-master|bf16] [--fused] [--recompute selective|layer|offload]
# (--precision: the training policy of the pose benchmark rows; the default is fp32-master; --fused: the trainer's
# fused update in those rows)
# Results land in $OUT: pose_bench.json, torch_baseline.json, torch_longctx.json, gpu.txt and logs.tar.gz (every
# log). torch_longctx.py runs with its training lengths cut to 16k and 32k (pose with fp32 master weights does not
# fit LLaMA-7B beyond 32k on one H200, and the peer's 64k/128k rows alone take minutes; the issue quotes them).
set -u
DEST=${OUT:-/tmp/pose-gpu-out}
TESTS=all BENCH=none TORCH=0 MEMCHECK=0 PREC=fp32-master FUSED= RECOMP=
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) TESTS=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --torch) TORCH=1 ;;
    --memcheck) MEMCHECK=1 ;;
    --precision) PREC=$2; shift ;;
    --fused) FUSED=--fused ;;
    --recompute) RECOMP="--recompute $2"; shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
  shift
done
L=$DEST/logs
mkdir -p "$L"
finish() { tar -C "$DEST" -czf "$DEST/logs.tar.gz" logs && rm -rf "$L"; }
{ cat COMMIT 2>/dev/null; date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used,memory.total --format=csv; nvcc --version | tail -1; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'; } > "$DEST/gpu.txt" 2>&1
t0=$(date +%s)
if ! { cmake -B build-gpu -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu -j16; } > "$L/build.log" 2>&1; then
  tail -40 "$L/build.log"; echo "BUILD FAILED"; finish; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
if [ "$TESTS" != none ]; then
  t0=$(date +%s)
  if [ "$TESTS" = model ]; then ctest --test-dir build-gpu -R gpu_test_model --output-on-failure -V > "$L/tests.log" 2>&1
  else ctest --test-dir build-gpu -L gpu --output-on-failure -V > "$L/tests.log" 2>&1; fi
  echo "gpu tests: rc=$?, $(( $(date +%s) - t0 )) s"
  grep -E "rel err|loss|golden|worst|init:|resumed|step +[0-9]+ |FAIL|failed|passed|-> POSE|SKIP|B/param|decode|greedy|same seed|through bf16|differ|fused|updated:|lazy" "$L/tests.log" | grep -v "^[0-9]*: *$" | sed -n '/test_model/,$p' | head -150
  grep -E "passed, [0-9]+ failed|tests passed|Test +#" "$L/tests.log"
  # the Lua device options with a GPU present (ctest runs the Lua tests on the CPU machine only)
  ./build-gpu/pose run tests/lua/test_model_device.lua > "$L/lua_device.log" 2>&1
  echo "lua test_model_device on the GPU: rc=$? $(tail -1 "$L/lua_device.log")"
fi
if [ $MEMCHECK = 1 ]; then
  t0=$(date +%s)
  POSE_GPU_QUICK=1 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 ./build-gpu/tests/gpu_test_model > "$L/memcheck.log" 2>&1
  echo "memcheck test_model: rc=$? $(grep -E 'ERROR SUMMARY' "$L/memcheck.log" | tail -1) ($(( $(date +%s) - t0 )) s)"
fi
if [ "$BENCH" != none ]; then
  t0=$(date +%s)
  case "$BENCH" in
    quick) A=--quick ;;
    full) A= ;;
    *) A="--only $BENCH" ;;
  esac
  ./build-gpu/tests/gpu_bench_model "$DEST/pose_bench.json" $A --precision "$PREC" $FUSED $RECOMP 2> "$L/bench.err" | tee "$L/bench.log"
  echo "pose bench: $(( $(date +%s) - t0 )) s"; grep -iE "error|fail|fwd\+bwd" "$L/bench.err" | head -20
fi
if [ $TORCH = 1 ]; then
  t0=$(date +%s)
  cp .deps/torch_baseline.py /tmp/torch_baseline.py
  sed 's/for T in (16384, 32768, 65536, 131072)/for T in (16384, 32768)/' .deps/torch_longctx.py > /tmp/torch_longctx.py
  OUT=$DEST PYTHONUNBUFFERED=1 python3 /tmp/torch_baseline.py > "$L/torch_baseline.log" 2>&1
  echo "torch_baseline: rc=$? $(( $(date +%s) - t0 )) s"
  t0=$(date +%s)
  OUT=$DEST PYTHONUNBUFFERED=1 python3 /tmp/torch_longctx.py > "$L/torch_longctx.log" 2>&1
  echo "torch_longctx: rc=$? $(( $(date +%s) - t0 )) s"
  grep -vE "^\{\"device" "$L/torch_baseline.log" "$L/torch_longctx.log" | cut -c1-220 | tail -30
fi
finish
