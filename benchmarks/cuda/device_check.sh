#!/bin/bash
# The GPU checks of the CUDA backend in one go, for a machine with a GPU:
# kernel tests, backend-vs-cpu tests, ferry-cuda-bench (ceilings, attention
# sweep, medium-preset steps and prefill), the PyTorch / transformers peers,
# and ferry-engine-bench end to end. Logs go to $OUT (or ./gpu-out).
#
#   benchmarks/cuda/device_check.sh BIN_DIR [LIB_DIR] [SHARED_DIR] [STAGES]
#   STAGES: comma list of tests,bench,peers,e2e (default: all)
set -u
BIN=$1
LIB=${2:-}
SHARED=${3:-}
STAGES=${4:-tests,bench,peers,e2e}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
CUDA_LIBS=/usr/local/cuda/lib64:/usr/local/cuda/lib
TORCH_LIBS=$(python3 -c 'import os, nvidia; p=os.path.dirname(nvidia.__path__[0]); print(":".join(os.path.join(r) for r,d,f in os.walk(p) if any(x.startswith("libcublas") for x in f)))' 2>/dev/null)
run() { LD_LIBRARY_PATH=${LIB}:${CUDA_LIBS}:${TORCH_LIBS} "$@"; }
has() { [[ ",$STAGES," == *",$1,"* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if has tests; then
  export FERRY_SHARED_DIR=$SHARED
  run "$BIN/ferry_cuda_kernels_test" 2>&1 | tee "$OUT/kernels_test.log" | grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|error|Expected|Which|rel" | head -60
  run "$BIN/ferry_cuda_engine_test" 2>&1 | tee "$OUT/engine_test.log" | grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|error|Expected|Which" | head -40
  # Two GPU workers on one device: a live migration device to device (CUDA IPC).
  run "$BIN/ferry_worker_test" --gtest_filter='*CudaIpc*' 2>&1 | tee "$OUT/worker_ipc_test.log" | grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Failure|error|Expected|Which" | head -20
fi
MODEL=/tmp/ferry-medium-bf16
if has bench || has peers || has e2e; then
  [ -d $MODEL ] || run "$BIN/ferry" make-model --out $MODEL --preset medium --format hf --dtype bf16 --seed 1 > "$OUT/make_model.log" 2>&1 || cat "$OUT/make_model.log"
fi
if has bench; then
  run "$BIN/ferry-cuda-bench" --model $MODEL --csv "$OUT/attention.csv" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/cuda_bench.log"
fi
if has peers; then
  python3 benchmarks/cuda/torch_compare.py sdpa --csv "$OUT/sdpa.csv" 2>&1 | tee "$OUT/sdpa.log"
  python3 benchmarks/cuda/torch_compare.py generate $MODEL 2>&1 | grep -v Warning | tee "$OUT/hf_generate.log"
fi
if has e2e; then
  run "$BIN/ferry-engine-bench" --model $MODEL --device cuda --dtype bfloat16 --concurrency 1,16,64 \
    --gen-tokens 128 --prompt-tokens 32 --prefix-tokens 1000 2>&1 | tee "$OUT/engine_bench.log"
fi
