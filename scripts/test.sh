#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: sets up the machine, builds, and runs every test tier that can run
# here: unit, privileged, and lsm (in a qemu guest, vagrant/run-lsm.sh). Exit status is ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 300 "$@"
