#!/usr/bin/env bash
# The `full` scale end to end in ~10 minutes of one GPU (see scripts/full_scale_check.py for what it measures).
#   scripts/full_scale_check.sh OUT            # on a GPU machine: results in OUT/results.json
#   scripts/full_scale_check.sh OUT --tiny     # the same path at tiny step counts, on a CPU (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
exec "$PYTHON" scripts/full_scale_check.py "$@"
