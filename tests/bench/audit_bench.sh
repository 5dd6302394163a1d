#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Audit store / audit stream throughput. Usage: tests/bench/audit_bench.sh [N] (default 100000).
# Builds first (BUILD_DIR, default build); results go to standard output.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2} BUILD_DIR="$BUILD_DIR" bash scripts/build.sh >/dev/null
exec "$BUILD_DIR/tests/bench/audit_bench" "${1:-100000}"
