#!/usr/bin/env bash
# On a GPU, in at most about 8 minutes: the CUDA tests, the CUDA benchmarks at the paper's shapes, and the paper
# configs' measured training peak and throughput, all under one output folder. Without CUDA it prints a
# "no CUDA:" line, writes a summary saying so and exits 0.
#
#   benchmarks/device_check.sh OUT      # or with $OUT set: benchmarks/device_check.sh
#
# The parts, their time limits and outputs: python -m benchmarks.device_check --help
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate
fi
exec python -m benchmarks.device_check "$@"
