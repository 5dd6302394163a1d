#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configure and build agentcage into ./build (or $BUILD_DIR). BUILD_TYPE=Debug|Release.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DAGENTCAGE_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
