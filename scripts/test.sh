#!/usr/bin/env bash
# Installs and starts everything the tests need (scripts/setup.sh), then runs
# the whole suite: unit and integration tests (real Docker engine, real QEMU
# guests) and the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/pytest tests benchmarks "$@"
