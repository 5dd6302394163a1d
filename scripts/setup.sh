#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every build, test and runtime dependency of agentcage from Debian 12 packages.
# Idempotent: a second run only checks that everything is present.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

PKGS=(
  # toolchain
  build-essential cmake pkg-config git clang llvm
  # eBPF: libbpf for loading, bpftool for vmlinux.h and skeletons
  libbpf-dev bpftool libelf-dev zlib1g-dev
  # confinement
  libseccomp-dev
  # API and audit stream
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  # core libraries
  libspdlog-dev libfmt-dev libyaml-cpp-dev libsqlite3-dev sqlite3 libssl-dev
  nlohmann-json3-dev libcli11-dev
  # tests
  libgtest-dev libgmock-dev iproute2 python3 procps util-linux
  # tests only: renders `audit report -o html` as a browser would (tests/privileged/report_test.cc)
  chromium-headless-shell
  # tests only: libFuzzer harnesses (tests/fuzz/); Debian 12's clang 14 cannot compile
  # libstdc++ 12's std::expected, clang 16 can
  clang-16 libclang-rt-16-dev
  # benchmarks (tests/bench/monitor_bench.sh): ratios and /usr/bin/time
  bc time
  # LSM test tier: a qemu guest under software emulation
  qemu-system-x86 busybox-static cpio
  # gRPC interop test (Node's @grpc/grpc-js; npm ships with this nodejs)
  nodejs
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: all packages present"
fi

# The gRPC interop client's npm packages (pinned by tests/interop/package-lock.json).
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/interop/node_modules/@grpc/grpc-js" ]; then
  echo "setup.sh: installing tests/interop npm packages"
  (cd "$here/tests/interop" && npm ci --no-audit --no-fund --loglevel=error)
fi
