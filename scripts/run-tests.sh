#!/usr/bin/env bash
# Set up (if needed) and run the whole suite headless: lint, architecture contracts, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check app tests bench docs
.venv/bin/ruff format --check app tests bench docs
.venv/bin/lint-imports pyproject.toml
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
