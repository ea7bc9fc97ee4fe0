#!/usr/bin/env bash
# The GPU CI job (.github/workflows/gpu.yml), also runnable by hand on any CUDA machine with Node >= 20,
# cmake, g++ and nvcc: build for this machine's GPU, the GPU jest suite with the CUDA cases required,
# compute-sanitizer memcheck + racecheck over the CUDA jest suites, `monarch-attn check --backend cuda`,
# and a short bench. Logs and JSON go to $OUT (default gpu-out/). Exit status: non-zero if any step failed.
#   scripts/gpu-ci.sh                 all steps
#   scripts/gpu-ci.sh tests check     some steps (build tests sanitize check bench)
#   CUDA_ARCH=90a scripts/gpu-ci.sh   override the architecture (default: from nvidia-smi)
#   SKIP_INSTALL=1                    node_modules already there (no npm ci)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}; mkdir -p "$out"
steps=${*:-build tests sanitize check bench}
export MONARCH_TEST_CUDA=1 CI=${CI:-true}
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc PATH=/usr/local/cuda/bin:$PATH
fi
# node_modules' own entry points: the GPU machine may have node without npm/npx.
jest="node node_modules/jest/bin/jest.js"
tsc="node node_modules/typescript/bin/tsc"
status=0
fail() { echo "FAILED: $*" | tee -a "$out/failures.txt"; status=1; }

# sm_90 and sm_100 need the arch-specific targets (wgmma / tcgen05 kernels): 90a, 100a.
arch_of_gpu() {
  local cc
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
  case $cc in 90|100|101|103) echo "${cc}a-real" ;; "") echo "" ;; *) echo "${cc}-real" ;; esac
}

{ nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader; node --version; nvcc --version | tail -1; } \
  > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

for s in $steps; do
  case $s in
    build)
      echo "== build (CUDA for this GPU)"
      [ "${SKIP_INSTALL:-0}" = 1 ] || npm ci --ignore-scripts --no-audit --no-fund > "$out/npm-ci.log" 2>&1 || fail "npm ci"
      arch=${CUDA_ARCH:-$(arch_of_gpu)}
      [ -n "$arch" ] || { fail "no GPU found by nvidia-smi (set CUDA_ARCH)"; continue; }
      # The documented rebuild path of an installed package (monarch-attn build --cuda-arch ...).
      node scripts/build-cuda.js --cuda-arch "$arch" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; fail "build ($arch)"; }
      tail -1 "$out/build.log"
      $tsc -p tsconfig.build.json || fail "tsc" ;;
    tests)
      echo "== GPU jest suite (CUDA cases required: npm run test:gpu)"
      MONARCH_TEST_CUDA=1 $jest --ci --runInBand --json --outputFile="$out/jest.json" > "$out/jest.log" 2>&1 || fail "GPU jest suite"
      grep -E '^Tests:' "$out/jest.log" | tail -1 ;;
    sanitize)
      echo "== compute-sanitizer memcheck + racecheck over the CUDA jest suites"
      # API errors are not reported: test/cuda-errors-recovery.test.ts provokes cudaMalloc out-of-memory on purpose.
      for tool in memcheck racecheck; do
        compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 99 --target-processes all \
          $jest --ci --runInBand ${SANITIZE_TESTS:-test/cuda-} > "$out/sanitize-$tool.log" 2>&1 || fail "sanitizer $tool"
        echo "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool.log" | tail -1); $(grep -E '^Tests:' "$out/sanitize-$tool.log" | tail -1)"
      done ;;
    check)
      echo "== monarch-attn check --backend cuda"
      node bin/monarch-attn.js info > "$out/info.txt" 2>&1 || fail "info"
      for dt in bfloat16 float16 float32; do
        node bin/monarch-attn.js check --backend cuda --dtype $dt > "$out/check-$dt.txt" 2>&1 || fail "check $dt"
        tail -1 "$out/check-$dt.txt"
      done ;;
    bench)
      echo "== short bench (seq-4k, self-forcing-chunk)"
      for p in ${BENCH_PRESETS:-seq-4k self-forcing-chunk}; do
        node bin/monarch-attn.js bench --backend cuda --preset $p --check --repeats ${BENCH_REPEATS:-50} --no-python \
          --json "$out/bench-$p.json" --no-progress > "$out/bench-$p.txt" 2>&1 || fail "bench $p"
      done
      grep -hE '│' "$out"/bench-*.txt | head -20 ;;
    *) fail "unknown step $s (build tests sanitize check bench)" ;;
  esac
done
[ $status = 0 ] && echo "gpu-ci: all steps passed" || { echo "gpu-ci: failures:"; cat "$out/failures.txt"; }
exit $status
