#!/bin/bash
# Builds pose with CUDA on the GPU machine, runs every GPU test (ctest -L gpu) and the kernel benchmark, and keeps
# the logs in OUTDIR (default $OUT). Run from the repository root under the carried Debian packages:
#   bash .deps/with-deps.sh bash tests/gpu/run_gpu.sh [OUTDIR] [--sanitize] [--profile] [--quick]
# Prints a short summary last (the device tool returns the tail of the output); the full logs are in OUTDIR.
set -u
DEST=${OUT:-/tmp/pose-gpu-out}
SAN=0
PROF=0
QUICK=
for a in "$@"; do
  case "$a" in
    --sanitize) SAN=1 ;;
    --profile) PROF=1 ;;
    --quick) QUICK=--quick ;;
    *) DEST=$a ;;
  esac
done
mkdir -p "$DEST"
{ cat COMMIT 2>/dev/null; date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv; nvcc --version | tail -1; } > "$DEST/gpu.txt" 2>&1
t0=$(date +%s)
if ! { cmake -B build-gpu -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu -j16; } > "$DEST/build.log" 2>&1; then
  tail -40 "$DEST/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
ctest --test-dir build-gpu -L gpu --output-on-failure -V > "$DEST/tests.log" 2>&1
rc=$?
echo "gpu tests: rc=$rc, $(( $(date +%s) - t0 )) s"
grep -E "FAIL|CHECK failed|-> POSE_|passed, [0-9]+ failed|differ from|rel err [0-9.e+-]+ \(tol" "$DEST/tests.log" \
  | grep -E "FAIL|failed: |-> POSE_|[1-9][0-9]* failed|differ from" | head -60
grep -E "^[0-9]+/[0-9]+ Test|tests passed" "$DEST/tests.log"
if [ $SAN = 1 ] && command -v compute-sanitizer >/dev/null; then
  t0=$(date +%s)
  : > "$DEST/sanitize.log"
  for t in attention xent norm_act; do
    POSE_GPU_QUICK=1 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 ./build-gpu/tests/gpu_test_$t >> "$DEST/sanitize.log" 2>&1
    echo "memcheck $t: rc=$? $(grep -E 'ERROR SUMMARY' "$DEST/sanitize.log" | tail -1)"
  done
  POSE_GPU_QUICK=1 timeout 240 compute-sanitizer --tool racecheck --error-exitcode 9 ./build-gpu/tests/gpu_test_attention >> "$DEST/sanitize.log" 2>&1
  echo "racecheck attention: rc=$? $(grep -E 'RACECHECK SUMMARY' "$DEST/sanitize.log" | tail -1) ($(( $(date +%s) - t0 )) s)"
fi
if [ $PROF = 1 ] && command -v ncu >/dev/null; then
  t0=$(date +%s)
  : > "$DEST/ncu.txt"
  for k in k_attn_fwd k_attn_bwd_dkdv k_attn_bwd_dq; do
    timeout 120 ncu --clock-control none -k regex:$k -c 1 --section SpeedOfLight --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      ./build-gpu/tests/gpu_bench_kernels --profile >> "$DEST/ncu.txt" 2>&1
  done
  echo "ncu: $(( $(date +%s) - t0 )) s"
fi
t0=$(date +%s)
./build-gpu/tests/gpu_bench_kernels "$DEST/bench.csv" $QUICK > "$DEST/bench.log" 2>&1
echo "bench: rc=$?, $(( $(date +%s) - t0 )) s"
cat "$DEST/bench.log"
