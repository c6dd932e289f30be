#!/usr/bin/env bash
# The GPU check of issue 9, ready to run on a machine with a CUDA GPU (at most 5 minutes):
# device detection; LeNet-5 and the resnet example for one epoch on Fashion-MNIST-sized data
# in fp32, bf16, fp16 and with --compile, images/s next to a hand-written torch loop; --nproc over nccl.
#   bash bench/gpu_check.sh            (PYTHON=/path/to/python to choose the interpreter)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not found"
timeout 290 "$PY" bench/gpu_check.py
code=$?
[ "$code" = 124 ] && echo "gpu_check: stopped after 290 s"
exit "$code"
