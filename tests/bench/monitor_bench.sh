#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Monitor overhead benchmarks (issue 3). Needs root and a built tree. Not part of ctest.
#
#   sudo tests/bench/monitor_bench.sh [ROUNDS]        (ROUNDS per configuration, default 5)
#   AGENTCAGE=/path/to/agentcage BENCH_DIR=/tmp/x ... to override
#
# Every workload is run natively and under `agentcage trace` (sandbox mode, every event
# recorded and written as JSON lines to a file), alternating the order each round so drift
# on a shared machine hits both alike. Times are the workload's own (timeit inside the
# sandbox), not the tracer's start-up. Reported: median wall time per configuration and
# the ratio of medians, plus CPU time (user+sys) ratios.
#   (a) 200k x openat+read+close+stat of one file     target <= 1.25x
#   (b) 2000 x fork+exec(/bin/true)+wait              target <= 1.05x
#   (d) git add + commit of 500 new files             target <= 1.05x
#   (u) (a) run outside the sandbox while a traced sandbox is live: what untracked
#       processes pay                                  target <= 1.02x
#   (r) paced open+close generator: highest rate delivered with zero loss (target 400k/s),
#       and the reader's CPU per event (target <= 0.5 us)
set -euo pipefail
ROUNDS=${1:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
AC=${AGENTCAGE:-$HERE/../../build/agent/agentcage}
W=${BENCH_DIR:-$(mktemp -d /tmp/agentcage-bench.XXXXXX)}
[[ $(id -u) == 0 ]] || { echo "monitor_bench: needs root (loads BPF programs)" >&2; exit 1; }
[[ -x $AC ]] || { echo "monitor_bench: $AC not found; build first (scripts/build.sh)" >&2; exit 1; }

for g in gen_files gen_forkexec gen_rate timeit; do
  cc -O2 -Wall -o "$W/$g" "$HERE/$g.c"
done
echo x > "$W/file"
TRUE_BIN=$(type -P true)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "agentcage: $AC; rounds: $ROUNDS; work dir: $W"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# run_native OUT CMD...  /  run_traced OUT CMD...: append one "wall user sys" line to OUT.
run_native() { local out=$1; shift; "$W/timeit" "$out" "$@" >/dev/null; }
run_traced() {
  local out=$1; shift
  "$AC" trace --output "$W/events.json" -- "$W/timeit" "$out" "$@" >/dev/null 2>"$W/trace.err" ||
    { cat "$W/trace.err" >&2; return 1; }
  if grep -q "events lost" "$W/trace.err"; then echo "  (loss during traced run: $(cat "$W/trace.err"))"; fi
}

# bench NAME PREPARE_FN CMD...: alternate native/traced ROUNDS times, print medians and ratios.
bench() {
  local name=$1 prep=$2; shift 2
  : >"$W/$name.native"; : >"$W/$name.traced"
  for ((i = 0; i < ROUNDS; i++)); do
    if ((i % 2 == 0)); then
      $prep; run_native "$W/$name.native" "$@"; $prep; run_traced "$W/$name.traced" "$@"
    else
      $prep; run_traced "$W/$name.traced" "$@"; $prep; run_native "$W/$name.native" "$@"
    fi
  done
  local nw tw nc tc
  nw=$(awk '{print $1}' "$W/$name.native" | median); tw=$(awk '{print $1}' "$W/$name.traced" | median)
  nc=$(awk '{print $2+$3}' "$W/$name.native" | median); tc=$(awk '{print $2+$3}' "$W/$name.traced" | median)
  printf '%-34s native %8.3fs  traced %8.3fs  wall ratio %5.3fx  cpu ratio %5.3fx  (events in last run: %s)\n' \
    "$name" "$nw" "$tw" "$(echo "$tw / $nw" | bc -l)" "$(echo "$tc / $nc" | bc -l)" "$(wc -l <"$W/events.json")"
}

noprep() { :; }
git_prep() {
  rm -rf "$W/repo" && mkdir -p "$W/repo/src" && git -C "$W/repo" init -q &&
    git -C "$W/repo" config user.email bench@agentcage && git -C "$W/repo" config user.name bench
  for ((k = 0; k < 500; k++)); do printf 'file %d\n%s\n' "$k" "$RANDOM$RANDOM" >"$W/repo/src/f$k.txt"; done
}

bench "(a) 200k open+read+close+stat" noprep "$W/gen_files" 200000 "$W/file"
bench "(b) 2000 fork+exec" noprep "$W/gen_forkexec" 2000 "$TRUE_BIN"
bench "(d) git add+commit 500 files" git_prep sh -c "cd '$W/repo' && git add -A && git commit -q -m bench"

# (u) untracked: the same workload outside a live traced sandbox.
: >"$W/u.off"; : >"$W/u.on"
for ((i = 0; i < ROUNDS; i++)); do
  run_native "$W/u.off" "$W/gen_files" 200000 "$W/file"
  "$AC" trace --output "$W/u.json" -- sleep 1000 >/dev/null 2>&1 & tp=$!
  sleep 1
  run_native "$W/u.on" "$W/gen_files" 200000 "$W/file"
  kill -INT $tp; wait $tp || true
done
uoff=$(awk '{print $1}' "$W/u.off" | median); uon=$(awk '{print $1}' "$W/u.on" | median)
printf '%-34s off    %8.3fs  on     %8.3fs  wall ratio %5.3fx  cpu ratio %5.3fx\n' "(u) untracked (a) beside a sandbox" \
  "$uoff" "$uon" "$(echo "$uon / $uoff" | bc -l)" \
  "$(echo "$(awk '{print $2+$3}' "$W/u.on" | median) / $(awk '{print $2+$3}' "$W/u.off" | median)" | bc -l)"

# (r) event rate: each level 2 s under trace; zero loss means no Loss record and a zero
# ringbuf_full counter. Reader CPU = agentcage's own CPU (total minus the generator's),
# minus the CPU of an idle traced run (BPF load, /proc seeding), per delivered event.
idle_cpu=$( { /usr/bin/time -f '%U %S' "$AC" trace --output /dev/null -- true >/dev/null; } 2>&1 | tail -1 | awk '{print $1+$2}')
best=0
for rate in ${RATES:-50000 100000 200000 300000 400000 500000 600000}; do
  : >"$W/rate.t"
  { /usr/bin/time -f 'TOTAL %U %S' "$AC" trace --output "$W/rate.json" -- "$W/timeit" "$W/rate.t" \
      "$W/gen_rate" "$rate" 2 "$W/file" >"$W/rate.out"; } 2>"$W/rate.err"
  total=$(awk '/^TOTAL/ {print $2+$3}' "$W/rate.err")
  gen=$(awk '{print $2+$3}' "$W/rate.t")
  events=$(wc -l <"$W/rate.json")
  achieved=$(awk '{print $3}' "$W/rate.out")
  lost=$(grep -o 'ringbuf_full=[0-9]*' "$W/rate.err" | cut -d= -f2 || true)
  lost=${lost:-0}
  reader_us=$(echo "($total - $gen - $idle_cpu) * 1000000 / $events" | bc -l)
  printf '(r) target %7d/s achieved %7.0f/s  events %8d  lost %7d  reader cpu %5.2f us/event\n' \
    "$rate" "$achieved" "$events" "$lost" "$reader_us"
  if [[ $lost == 0 ]] && ! grep -q '"loss"' "$W/rate.json"; then
    best=$(echo "if ($achieved > $best) $achieved else $best" | bc -l)
  else
    break
  fi
done
printf '(r) highest rate delivered with zero loss: %.0f events/s\n' "$best"
