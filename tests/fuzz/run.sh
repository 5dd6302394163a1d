#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one fuzz harness for a bounded time: run.sh BINARY NAME SECONDS WORKDIR.
# The corpus starts from the seeds for NAME (unit fixtures, the review's reproducers,
# tests/fuzz/seeds/NAME) and grows in WORKDIR/corpus/NAME, so later runs start where
# earlier ones stopped. A crash, a failed property, a leak or an input slower than
# -timeout fails the run; the input is kept in WORKDIR/artifacts/NAME/ and printed.
set -euo pipefail
bin=$1 name=$2 seconds=$3 work=$4
src="$(cd "$(dirname "$0")/../.." && pwd)"
fx="$src/tests/unit/fixtures"
corpus="$work/corpus/$name" artifacts="$work/artifacts/$name"
mkdir -p "$corpus" "$artifacts"
[[ -x $bin ]] || { echo "run.sh: $bin is not built (make agentcage_fuzzers)" >&2; exit 1; }

seed() {  # seed FILE...: copy into the corpus (names by content, as libFuzzer does)
  local f
  for f in "$@"; do [[ -f $f ]] && cp "$f" "$corpus/seed-$(sha1sum < "$f" | cut -c1-16)"; done
  return 0
}
shopt -s nullglob globstar
case $name in
  profile) seed "$src"/profiles/*.yaml "$fx"/profiles/*.yaml "$fx"/repro/*.yaml ;;
  oci_seccomp) seed "$fx"/**/*.json ;;
  decoder) seed "$fx"/repro/*.bin ;;
esac
seed "$src"/tests/fuzz/seeds/"$name"/*
dict=()
[[ -f $src/tests/fuzz/$name.dict ]] && dict=(-dict="$src/tests/fuzz/$name.dict")

# -timeout: one input taking seconds is a finding (the review found profiles that did).
# -rss_limit_mb: a blow-up in memory is one too. Leak checking stays on (ASan's default).
exec "$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus"
