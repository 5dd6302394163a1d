#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end event throughput through agentcaged: kernel -> ring buffer -> reader ->
# store -> (a) a live Subscribe client (`agentcage events -f`, JSON lines to a file) and
# (b) an `agentcage collector` on loopback (audit stream, --audit-all).
#
# Usage (root, from anywhere): tests/bench/daemon_bench.sh [SECONDS] [RATE...]
#   default: 2 seconds per level, rates 10000 20000 30000 40000 60000 100000 events/s
# Each level runs gen_rate (open+close of one file, one event per open) paced at RATE in a
# sandbox created through the daemon, then waits until the subscriber and the collector
# hold every event the store got. Reported per level and per consumer:
#   events/s = events of the level / (time the consumer held the last one - time of the
#              level's first event, both wall clock; polled every 20 ms)
#   lost     = events dropped for the subscriber (its sink_queue_full Loss events) +
#              kernel ringbuf_full + the store writer's Loss rows + events the collector
#              is missing (each a count of events, summed)
# and the highest rate each consumer kept up with at zero loss. Needs sqlite3 (setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
SECS=${1:-2}
shift || true
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(10000 20000 30000 40000 60000 100000)
[ "$(id -u)" = 0 ] || { echo "daemon_bench: needs root (agentcaged loads BPF programs)" >&2; exit 1; }
JOBS=${JOBS:-2} BUILD_DIR="$BUILD_DIR" bash scripts/build.sh >/dev/null
AC=$ROOT/$BUILD_DIR/agent/agentcage
ACD=$ROOT/$BUILD_DIR/daemon/agentcaged

T=$(mktemp -d /tmp/agentcage-dbench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
cc -O2 -o "$T/gen_rate" tests/bench/gen_rate.c
: >"$T/target"
chmod 0644 "$T/target"

now() { date +%s.%N; }
q() { sqlite3 -readonly "$1" "$2" 2>/dev/null || echo 0; }

"$AC" collector --listen 127.0.0.1:0 --db "$T/collector.db" --insecure --insecure-accept-any-node >"$T/collector.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$T/collector.log" && break; sleep 0.05; done
PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/collector.log")
[ -n "$PORT" ] || { cat "$T/collector.log"; exit 1; }

"$ACD" --socket "$T/s" --audit-db "$T/audit.db" --audit-endpoint "127.0.0.1:$PORT" --audit-insecure --audit-all \
  --log-level warn >"$T/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do [ -S "$T/s" ] && break; sleep 0.05; done
[ -S "$T/s" ] || { cat "$T/daemon.log"; exit 1; }
"$AC" events -f --socket "$T/s" >"$T/sub.json" 2>"$T/sub.err" &
PIDS+=($!)
for _ in $(seq 100); do "$AC" status --socket "$T/s" | grep -q 'subscribers: 1' && break; sleep 0.05; done

ringbuf_full() { "$AC" status --socket "$T/s" | awk '$1 == "kernel.ringbuf_full" { print $2 }'; }

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GB RAM, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "levels: ${SECS}s each; consumers: Subscribe client (agentcage events -f > file), collector (loopback, plaintext)"
best_sub=0
best_coll=0
for rate in "${RATES[@]}"; do
  head0=$(q "$T/audit.db" 'select coalesce(max(seq),0) from events')
  lines0=$(wc -l <"$T/sub.json")
  rb0=$(ringbuf_full)
  "$AC" run --socket "$T/s" -- "$T/gen_rate" "$rate" "$SECS" "$T/target" >"$T/gen.out"
  t_sub="" t_coll="" stable=0 last=-1
  deadline=$(( $(date +%s) + 120 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    head=$(q "$T/audit.db" 'select coalesce(max(seq),0) from events')
    # The store still growing: whatever was caught up is not the end yet.
    if [ "$head" != "$last" ]; then stable=0; t_sub=""; t_coll=""; else stable=$((stable + 1)); fi
    last=$head
    n=$((head - head0))
    got=$(( $(wc -l <"$T/sub.json") - lines0 ))
    coll=$(q "$T/collector.db" 'select count(*) from events')
    [ -z "$t_sub" ] && [ "$n" -gt 0 ] && [ "$got" -ge "$n" ] && t_sub=$(now)
    [ -z "$t_coll" ] && [ "$n" -gt 0 ] && [ "$coll" -ge "$head" ] && t_coll=$(now)
    if [ -n "$t_sub" ] && [ -n "$t_coll" ] && [ "$stable" -ge 10 ]; then break; fi
    # A consumer that lost events never catches up: give up once nothing moves for 2 s.
    [ "$stable" -ge 100 ] && [ "$got" = "${got_prev:-}" ] && [ "$coll" = "${coll_prev:-}" ] && break
    got_prev=$got coll_prev=$coll
    sleep 0.02
  done
  head=$(q "$T/audit.db" 'select coalesce(max(seq),0) from events')
  n=$((head - head0))
  first_ns=$(q "$T/audit.db" "select min(time_ns) from events where seq > $head0")
  first=$(awk -v ns="$first_ns" 'BEGIN { printf "%.6f", ns / 1e9 }')
  # Events lost, by where (sums of the Loss events' counts): the subscriber's own queue,
  # the kernel ring buffer, the store writer's queue (a Loss row), the collector (missing).
  sum_counts() { grep -o '"count":"[0-9]*"' | tr -dc '0-9\n' | awk '{ s += $1 } END { print s + 0 }'; }
  sub_loss=$(tail -n +"$((lines0 + 1))" "$T/sub.json" | grep '"sink_queue_full"' | sum_counts || true)
  store_loss=$("$AC" events --socket "$T/s" --kind loss --from-seq "$((head0 + 1))" | grep '"store_queue_full"' | sum_counts || true)
  coll=$(q "$T/collector.db" 'select count(*) from events')
  rb=$(( $(ringbuf_full) - rb0 ))
  coll_missing=$((head > coll ? head - coll : 0))
  got=$(tail -n +"$((lines0 + 1))" "$T/sub.json" | grep -vc '"sink_queue_full"' || true)
  sub_missing=$((n > got + sub_loss ? n - got - sub_loss : 0))  # neither delivered nor reported
  loss=$((sub_loss + sub_missing + rb + store_loss + coll_missing))
  sub_rate=$(awk -v n="$n" -v a="$first" -v b="${t_sub:-0}" 'BEGIN { if (b > a) printf "%.0f", n / (b - a); else print 0 }')
  coll_rate=$(awk -v n="$n" -v a="$first" -v b="${t_coll:-0}" 'BEGIN { if (b > a) printf "%.0f", n / (b - a); else print 0 }')
  printf "target %7d/s  generated %7s/s  stored %8d  subscriber %7d/s  collector %7d/s  lost %d (subscriber %d+%d, ringbuf %d, store queue %d, collector %d)\n" \
    "$rate" "$(cut -d' ' -f3 "$T/gen.out")" "$n" "$sub_rate" "$coll_rate" "$loss" "$sub_loss" "$sub_missing" "$rb" "$store_loss" "$coll_missing"
  if [ "$loss" = 0 ]; then
    [ "$sub_rate" -gt "$best_sub" ] && best_sub=$sub_rate
    [ "$coll_rate" -gt "$best_coll" ] && best_coll=$coll_rate
  fi
done
echo "highest zero-loss throughput: subscriber ${best_sub} events/s, collector ${best_coll} events/s"
"$AC" audit verify --db "$T/audit.db"
