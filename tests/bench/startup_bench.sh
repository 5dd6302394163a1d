#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Confinement cost: start-up of /bin/true natively, in a bare sandbox (cgroup only) and
# fully confined (seccomp + Landlock + private view + masks + pids + caps), then the CPU
# cost of syscall-heavy work natively vs confined. Needs root and a build (BUILD_DIR,
# default build). CPU time (user+sys of the command, from wait4 rusage) is used for the
# throughput runs: on a shared 2-core machine wall time is mostly other people's builds.
# Usage: tests/bench/startup_bench.sh [startup-runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
RUNS=${1:-200}
RUN="$BUILD_DIR/tests/bench/confine/confined_run"
SB="$BUILD_DIR/tests/bench/confine/syscall_bench"
[ -x "$RUN" ] && [ -x "$SB" ] || { echo "build first: BUILD_DIR=$BUILD_DIR bash scripts/build.sh" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (cgroups, namespaces)" >&2; exit 1; }

python3 - "$RUNS" "$RUN" "$SB" <<'PY'
import os, resource, statistics, subprocess, sys, time
runs, run, sb = int(sys.argv[1]), sys.argv[2], os.path.abspath(sys.argv[3])

def startup(argv):
    for _ in range(10):  # warm caches
        subprocess.run(argv, check=True)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), min(ts)

native = startup(["/bin/true"])
bare = startup([run, "--no-confine", "--", "/bin/true"])
conf = startup([run, "--", "/bin/true"])
print(f"start-up of /bin/true over {runs} runs, median (min):")
print(f"  native                   {native[0]:6.2f} ms ({native[1]:.2f})")
print(f"  sandbox, no confinement  {bare[0]:6.2f} ms ({bare[1]:.2f})   +{bare[0]-native[0]:.2f} ms over native")
print(f"  sandbox, confined        {conf[0]:6.2f} ms ({conf[1]:.2f})   +{conf[0]-native[0]:.2f} ms over native, "
      f"+{conf[0]-bare[0]:.2f} ms for the confinement itself")

def cpu_ms(argv):
    # Children's rusage accumulates on reap, through every level (the sandboxed command is
    # reaped by confined_run, which we reap): the delta is the command's CPU plus the
    # launcher's, the same launcher cost on both sides of the comparison except confinement.
    best = float("inf")
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3)
    return best

work = [
    ("open-heavy loop (getppid+open+fstat+read+close+stat) x100k", [sb, "100000", "open"]),
    ("syscall loop without opens (getppid+fstat+pread+write+stat) x100k", [sb, "100000", "noopen"]),
    ("real tool: tar of /usr/include piped to cat", ["/bin/sh", "-c", "tar -C /usr -cf - include | cat >/dev/null"]),
]
print("CPU time, best of 7 (native -> confined):")
for name, argv in work:
    n = cpu_ms([run, "--no-confine", "--"] + argv)
    c = cpu_ms([run, "--"] + argv)
    print(f"  {name}: {n:.0f} -> {c:.0f} ms  = {c/n:.3f}x")
PY
