#!/usr/bin/env bash
# Set up (if needed) and open LayerLab with the bundled demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/layerlab "$@"
