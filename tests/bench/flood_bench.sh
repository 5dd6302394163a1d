#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Flood benchmark (issue 11 item 7). Needs root and a built tree. Not part of ctest.
#
#   sudo tests/bench/flood_bench.sh [SECONDS] [K]     (defaults: 5 s, 200 victims of each kind)
#
# gen_flood runs one flooding thread per core, each failing the same denied open as fast
# as it can, while its main thread makes K different denied opens, K denied connects and
# K fork+exec in the same sandbox (`run --profile default`: the flood path and the victims
# are files the view hides, each open a mount-mask violation). Run natively first (the
# flood rate this machine reaches), then in-process and through an agentcaged of its own.
# Reported per configuration: the flood rate and its ratio to native, and from the
# violations relayed on stderr: the flood's attempts as counted by the record (1 +
# repeats of each folded violation) against the generator's own count, how many victims
# of each kind were delivered, and the losses reported. Done when delivered = K for
# every kind, the counts match exactly, and nothing is lost.
set -euo pipefail
SECS=${1:-5}
K=${2:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
AC=${AGENTCAGE:-$HERE/../../build/agent/agentcage}
ACD=${AGENTCAGED:-$HERE/../../build/daemon/agentcaged}
W=$(mktemp -d /tmp/agentcage-flood.XXXXXX)
[[ $(id -u) == 0 ]] || { echo "flood_bench: needs root" >&2; exit 1; }
[[ -x $AC && -x $ACD ]] || { echo "flood_bench: build first (scripts/build.sh)" >&2; exit 1; }
# The generator must be executable inside the default profile's view (filesystem.exec).
BIN=/usr/libexec/agentcage-bench
mkdir -p "$BIN"
cc -O2 -Wall -pthread -o "$BIN/gen_flood" "$HERE/gen_flood.c"
FLOOD=/srv/agentcage-flood-$$
mkdir -p /srv
echo secret >"$FLOOD"
for ((i = 0; i < K; i++)); do echo secret >"$FLOOD-v$i"; done
chmod 0644 "$FLOOD" "$FLOOD"-v*
mkdir -p "$W/ws"
DPID=
cleanup() {
  [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  rm -rf "/sys/fs/bpf/agentcage-flood-$$" "$FLOOD" "$FLOOD"-v*
}
trap cleanup EXIT
THREADS=$(nproc)
echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $SECS s, $THREADS flood threads, K=$K"

# Natively the flood path is one that does not exist: the same failing open.
native=$("$BIN/gen_flood" "$SECS" "$THREADS" "$FLOOD-missing" "$FLOOD-missing-v" "$K")
native_rate=$(awk '{print $4}' <<<"$native")
printf '%-12s flood %9s/s\n' native "$native_rate"

set +e  # the counting pipelines below may match nothing: that is a result, not an error
report() {  # NAME STDOUT STDERR STORE
  local name=$1 out=$2 err=$3 db=$4
  local attempts rate opens connects execs
  read -r _ attempts _ rate _ opens _ connects _ execs <<<"$(grep flood_attempts "$out" || echo "- - - - - - - - - -")" || true
  # Relayed violations: the flood's (with their repeats), the victims' (one each).
  local counted victims_open victims_net lost
  counted=$(grep -F "mount-mask" "$err" | grep -F -- "$FLOOD" | grep -v -- "$FLOOD-v" |
    awk '{ n = 1; if (match($0, /, and [0-9]+ more identical/)) n += substr($0, RSTART + 6) + 0; t += n }
         END { print t + 0 }')
  victims_open=$(grep -F "mount-mask" "$err" | grep -o -- "$FLOOD-v[0-9]*" | sort -u | wc -l)
  victims_net=$(grep -F "cgroup-bpf" "$err" | grep -o "127.0.0.1:2[0-9]*" | sort -u | wc -l)
  lost=$(grep -o "loss: .*" "$err" | head -3 | tr '\n' ';')
  # The victims' execs as recorded (not violations: counted from the run's store).
  local recorded_execs
  recorded_execs=$("$AC" events --db "$db" -o text 2>/dev/null | grep -c "exec .*/true true$")
  printf '%-12s flood %9s/s (%.2fx native)  attempts %s recorded %s  victims: opens %s/%s connects %s/%s execs %s/%s (ran %s)  %s\n' \
    "$name" "$rate" "$(awk -v a="$rate" -v b="$native_rate" 'BEGIN {print a / b}')" "$attempts" "$counted" \
    "$victims_open" "$K" "$victims_net" "$K" "$recorded_execs" "$K" "$execs" "${lost:-no loss}"
}

"$AC" run --no-daemon --audit-db "$W/inproc.db" --profile default --workspace "$W/ws" -- \
  "$BIN/gen_flood" "$SECS" "$THREADS" "$FLOOD" "$FLOOD-v" "$K" >"$W/inproc.out" 2>"$W/inproc.err" || true
report in-process "$W/inproc.out" "$W/inproc.err" "$W/inproc.db"

"$ACD" --socket "$W/d.sock" --audit-db "$W/audit.db" --state-dir "$W/state" \
  --bpf-pin-dir "/sys/fs/bpf/agentcage-flood-$$" --store-witness-dir "$W/witness" >"$W/daemon.log" 2>&1 &
DPID=$!
for ((i = 0; i < 500; i++)); do [[ -S $W/d.sock ]] && break; sleep 0.01; done
"$AC" run --socket "$W/d.sock" --profile default --workspace "$W/ws" -- \
  "$BIN/gen_flood" "$SECS" "$THREADS" "$FLOOD" "$FLOOD-v" "$K" >"$W/daemon.out" 2>"$W/daemon.err" || true
report agentcaged "$W/daemon.out" "$W/daemon.err" "$W/audit.db"
echo "work dir: $W"
