#!/bin/sh
# The prepared GPU check of issue 13: finishes in under 5 minutes on one GPU; without CUDA it
# runs the CPU parts at tiny sizes and says so. Extra arguments go to the driver
# (--quick, --cpu-only, --no-compile, --budget-s S). Figures go to stdout.
set -e
cd "$(dirname "$0")/.."
export PAGBENCH_OFFLINE="${PAGBENCH_OFFLINE:-1}"
PYTHON="${PYTHON:-python}"
exec timeout 295 "$PYTHON" benchmarks/gpu_check.py "$@"
