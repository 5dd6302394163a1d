#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Longer fuzzing than CI's bounded run: scripts/fuzz.sh [SECONDS] [HARNESS...]
# Each harness (profile oci_seccomp net_rule decoder store; all by default) runs SECONDS
# (default 600) from the same seeds and the corpus earlier runs grew in
# $BUILD_DIR/tests/fuzz/work. Findings are kept in .../work/artifacts/HARNESS/; to replay
# one: $BUILD_DIR/tests/fuzz/harness/fuzz_HARNESS FILE. Add a reproducer worth keeping to
# tests/fuzz/seeds/HARNESS/ so every later run (CI's too) tries it first.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
seconds=${1:-600}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(profile oci_seccomp net_rule decoder store)
bash scripts/build.sh
rc=0
for h in "${harnesses[@]}"; do
  echo "== fuzz $h for ${seconds}s"
  bash tests/fuzz/run.sh "$BUILD_DIR/tests/fuzz/harness/fuzz_$h" "$h" "$seconds" "$BUILD_DIR/tests/fuzz/work" || rc=1
done
exit $rc
