#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of the name check (issue 14 item 4): TCP connect latency and throughput to a
# server on port 443, each connection opening with a TLS ClientHello
# (gen_conn.c), in three configurations measured in the same run, alternating each round
# (the server is in a network namespace behind a veth pair):
#   native  no sandbox
#   direct  a sandbox whose network rule allows the address by CIDR (no name check)
#   named   a sandbox that reaches it by an allowed name: learned from agentcage's
#           resolver, redirected in the kernel to the name check, which reads the SNI and
#           splices the connection to the server
# Printed: median per configuration, and the ratios named/direct and direct/native.
#
# Usage (root, built tree; not part of ctest): tests/bench/name_check_bench.sh [ROUNDS] [CONNECTS] [MIB]
#   default 5 rounds of 300 connects and 2048 MiB
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
ROUNDS=${1:-5}
CONNECTS=${2:-300}
MIB=${3:-2048}
[ "$(id -u)" = 0 ] || { echo "name_check_bench: needs root (agentcage loads BPF programs)" >&2; exit 1; }
AC=$ROOT/$BUILD_DIR/agent/agentcage
[ -x "$AC" ] || { echo "name_check_bench: build first (scripts/build.sh)" >&2; exit 1; }
# The server is "another host": a network namespace behind a veth pair (an allowed name
# answered with this host's own address is never learned).
NS=acbench$$
HOST=198.18.251.2

# Outside /tmp: the profiles' /tmp is private. Removed on exit.
T=$(mktemp -d "$ROOT/$BUILD_DIR/name-bench-XXXXXX")
chmod 755 "$T"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip link del "${NS}h" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
ip netns add "$NS"
ip link add "${NS}h" type veth peer name "${NS}n" netns "$NS"
ip addr add 198.18.251.1/30 dev "${NS}h"
ip link set "${NS}h" up
ip -n "$NS" addr add "$HOST/30" dev "${NS}n"
ip -n "$NS" link set "${NS}n" up
ip -n "$NS" link set lo up
cc -O2 -o "$T/gen_conn" tests/bench/gen_conn.c -lpthread

# A resolver answering every name with this host's address (what a CDN name would get).
cat >"$T/dns.py" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.77', 53))
ip = socket.inet_aton(sys.argv[1])
print('ready', flush=True)
while True:
    q, a = s.recvfrom(1500)
    end = 12
    while q[end]:
        end += q[end] + 1
    end += 5
    qtype = struct.unpack('>H', q[end - 4:end - 2])[0]
    r = q[:2] + b'\x81\x80' + q[4:6] + (b'\x00\x01' if qtype == 1 else b'\x00\x00') + b'\x00\x00\x00\x00' + q[12:end]
    if qtype == 1:
        r += b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04' + ip
    s.sendto(r, a)
EOF
python3 "$T/dns.py" "$HOST" >"$T/dns.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS" "$T/gen_conn" server "$HOST" 443 >"$T/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q ready "$T/dns.log" && grep -q ready "$T/server.log" && break; sleep 0.05; done
grep -q ready "$T/dns.log" && grep -q ready "$T/server.log" || { cat "$T/dns.log" "$T/server.log"; exit 1; }

common="extends: default
filesystem:
  read: [$T]
  exec: [$T]
actions:
  network: deny"
cat >"$T/direct.yaml" <<EOF
name: bench-direct
$common
network:
  rules:
    - {cidr: $HOST/32, ports: [443], protocol: tcp}
EOF
cat >"$T/named.yaml" <<EOF
name: bench-named
$common
network:
  dns: [127.0.0.77]
  domains:
    - {name: "*.bench.test", ports: [443], protocol: tcp}
EOF

# One measurement: prints the client's own seconds.
measure() { # config mode args...
  local cfg=$1
  shift
  local cmd="$T/gen_conn $* "
  case $cfg in
    native) sh -c "$cmd" ;;
    direct) "$AC" run --no-daemon --no-store --profile "$T/direct.yaml" --workspace "$T" -- sh -c "$cmd" 2>/dev/null ;;
    named) "$AC" run --no-daemon --no-store --profile "$T/named.yaml" --workspace "$T" -- \
      sh -c "getent ahostsv4 b.bench.test >/dev/null && $cmd" 2>/dev/null ;;
  esac | sed -n 's/^seconds //p'
}

declare -A LAT TPUT
for r in $(seq "$ROUNDS"); do
  order=(native direct named)
  [ $((r % 2)) = 0 ] && order=(named direct native)
  for cfg in "${order[@]}"; do
    LAT[$cfg]+="$(measure "$cfg" latency "$HOST" 443 "$CONNECTS" b.bench.test) "
    TPUT[$cfg]+="$(measure "$cfg" throughput "$HOST" 443 "$MIB" b.bench.test) "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf 'name check: %s rounds, %s connects, %s MiB per round; host load %s\n' "$ROUNDS" "$CONNECTS" "$MIB" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A ML MT
for cfg in native direct named; do
  ML[$cfg]=$(echo "${LAT[$cfg]}" | median)
  MT[$cfg]=$(echo "${TPUT[$cfg]}" | median)
  awk -v c="$cfg" -v l="${ML[$cfg]}" -v t="${MT[$cfg]}" -v n="$CONNECTS" -v m="$MIB" \
    'BEGIN {printf "%-7s connect+hello+answer %8.1f us   throughput %8.1f MiB/s\n", c, l / n * 1e6, m / t}'
done
awk -v a="${ML[named]}" -v b="${ML[direct]}" -v c="${ML[native]}" -v x="${MT[named]}" -v y="${MT[direct]}" \
  -v z="${MT[native]}" 'BEGIN {
    printf "latency ratio    named/direct %.2fx   direct/native %.2fx\n", a / b, b / c
    printf "throughput ratio named/direct %.2fx   direct/native %.2fx (time ratios: higher is slower)\n", x / y, y / z
  }'
