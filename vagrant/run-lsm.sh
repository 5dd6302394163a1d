#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# vagrant/run-lsm.sh CMD ARGS...
#
# Runs one command inside a throw-away qemu guest whose kernel has BPF LSM enabled, and
# exits with the command's exit status. The guest sees the host's "/" read-only (virtio-9p,
# with a tmpfs overlay for writes), so CMD and everything it needs come from the host tree;
# it has no network. Its output streams to this script's standard output.
#
# The kernel is Debian's generic linux-image-amd64 (BPF_LSM=y, BTF, 9p/overlay/virtio as
# modules, "bpf" already in its default LSM list), fetched once with `apt-get download`
# and unpacked into vagrant/.cache/: nothing is installed into /boot. See vagrant/README.md.
#
# Exit status: CMD's, or 125 when the guest could not be had or booted (never 0), so a
# test tier built on this fails when the VM does.
#
# Environment:
#   AGENTCAGE_VM_CACHE    cache directory (default: vagrant/.cache next to this script)
#   AGENTCAGE_VM_TIMEOUT  seconds before the guest is killed (default 600)
#   AGENTCAGE_VM_MEM      guest memory in MiB (default 1024)
#   AGENTCAGE_VM_CPUS     guest CPUs (default 1; TCG runs one host thread per CPU)
#   AGENTCAGE_VM_VERBOSE  1: show the guest kernel's boot log and timings
#   AGENTCAGE_VM_REFRESH  1: ask apt for the current kernel package even if one is cached
#   AGENTCAGE_VM_APPEND   extra kernel command-line arguments (e.g. lsm=landlock to boot
#                         without BPF LSM)
# Variables named GTEST_* and AGENTCAGE_* (except these) are passed to CMD, as are PATH
# and the working directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${AGENTCAGE_VM_CACHE:-$here/.cache}
timeout_s=${AGENTCAGE_VM_TIMEOUT:-600}
mem=${AGENTCAGE_VM_MEM:-1024}
cpus=${AGENTCAGE_VM_CPUS:-1}
verbose=${AGENTCAGE_VM_VERBOSE:-0}
refresh=${AGENTCAGE_VM_REFRESH:-0}
kpkg_meta=linux-image-amd64 # Debian's generic flavour; -cloud-amd64 lacks 9p
modules=(9p 9pnet_virtio overlay virtio_pci)

die() {
  echo "run-lsm.sh: error: $1" >&2
  [ $# -gt 1 ] && echo "hint: $2" >&2
  exit 125
}
log() { [ "$verbose" = 1 ] && echo "run-lsm.sh: $*" >&2 || true; }

[ $# -ge 1 ] || die "usage: vagrant/run-lsm.sh CMD ARGS..."
[ "$(id -u)" -eq 0 ] || die "must run as root (qemu reads the whole host tree over 9p)"
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 not found" "apt-get install --no-install-recommends qemu-system-x86 (scripts/setup.sh does)"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found" "apt-get install busybox-static (scripts/setup.sh does)"
[[ "$(LC_ALL=C ldd "$busybox" 2>&1 || true)" == *"not a dynamic executable"* ]] ||
  die "$busybox is dynamically linked; the initramfs needs a static one" "apt-get install busybox-static"
for t in cpio dpkg-deb xz; do
  command -v $t >/dev/null || die "$t not found" "bash scripts/setup.sh installs the LSM tier's packages"
done

mkdir -p "$cache"
# One runner at a time fetches and unpacks (ctest -j may start several).
exec 9>"$cache/.lock"
flock 9

# --- kernel: vmlinux + the modules the initramfs loads, per kernel release -------------

# Downloads kernel package $1 and unpacks vmlinux + modules into $cache/$1.
fetch_kernel() {
  local kpkg=$1 deb vmlinuz m tool off kdir
  log "fetching $kpkg"
  tmp=$(mktemp -d "$cache/fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$kpkg" >/dev/null) ||
    die "apt-get download $kpkg failed" "the LSM tier needs Debian's package mirror once; afterwards $cache is enough"
  deb=$(ls "$tmp"/*.deb)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/fs/9p' \
    './lib/modules/*/kernel/net/9p' './lib/modules/*/kernel/fs/overlayfs' './lib/modules/*/kernel/fs/netfs' \
    './lib/modules/*/kernel/fs/fscache' './lib/modules/*/kernel/drivers/virtio' ||
    die "unpacking $deb failed"
  vmlinuz=$(ls "$tmp"/boot/vmlinuz-*)
  # The bzImage wraps a compressed ELF vmlinux. Booting the ELF directly (PVH entry)
  # skips the in-guest decompression, ~5 s under TCG. Same approach as the kernel's
  # scripts/extract-vmlinux: find the compressor's magic, decompress from there.
  for m in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    tool=${m%%:*}
    for off in $(LC_ALL=C grep -obUaP "${m#*:}" "$vmlinuz" | cut -d: -f1); do
      tail -c +$((off + 1)) "$vmlinuz" | $tool -dc 2>/dev/null >"$tmp/vmlinux" || true
      if [ "$(head -c 4 "$tmp/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then break 2; fi
    done
  done
  [ "$(head -c 4 "$tmp/vmlinux" 2>/dev/null | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
    die "could not extract an ELF vmlinux from $vmlinuz"
  kdir=$cache/$kpkg
  rm -rf "$kdir"
  mkdir -p "$kdir"
  mv "$tmp/vmlinux" "$kdir/vmlinux.part"
  mv "$tmp"/lib/modules/*/kernel "$kdir/modules"
  mv "$kdir/vmlinux.part" "$kdir/vmlinux" # last: its presence marks a complete entry
  rm -rf "$tmp"
  trap - EXIT
}

# A cached kernel is used as is (runs stay offline and reproducible); apt is asked for
# the current package only when nothing is cached or AGENTCAGE_VM_REFRESH=1.
cached_kernel() {
  local d
  d=$(ls -d "$cache"/linux-image-*/ 2>/dev/null | sort -V | tail -1 || true)
  d=${d%/}
  [ -n "$d" ] && [ -f "$d/vmlinux" ] && echo "$d" || true
}
kdir=$(cached_kernel)
if [ -z "$kdir" ] || [ "$refresh" = 1 ]; then
  # Name of the kernel package behind the meta package, e.g. linux-image-6.1.0-56-amd64.
  kpkg=$(apt-cache depends "$kpkg_meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}' || true)
  if [ -z "$kpkg" ]; then
    [ -n "$kdir" ] || die "apt does not know $kpkg_meta and no kernel is cached in $cache" \
      "run 'apt-get update' (the lsm tier needs Debian's package mirror once)"
    echo "run-lsm.sh: warning: apt does not know $kpkg_meta; using the cached $kdir" >&2
  elif [ ! -f "$cache/$kpkg/vmlinux" ]; then
    fetch_kernel "$kpkg"
    kdir=$cache/$kpkg
  else
    kdir=$cache/$kpkg
  fi
fi
log "kernel: $kdir"

# --- initramfs: static busybox, /init, the modules in load order ------------------------

# Rebuilt when the init script, busybox or this script changes (one per kernel directory).
ikey=$(cat "$here/guest-init.sh" "$busybox" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
initrd=$kdir/initramfs-$ikey.cpio.gz
if [ ! -f "$initrd" ]; then
  log "building $initrd"
  root=$(mktemp -d "$cache/initrd.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/modules"
  cp "$busybox" "$root/bin/busybox"
  cp "$here/guest-init.sh" "$root/init"
  chmod 755 "$root/init"
  # Resolve module dependencies from each .ko's own modinfo ("depends=a,b"), no depmod.
  declare -A kofile=() done_mod=()
  while IFS= read -r f; do kofile[$(basename "$f" .ko)]=$f; done < <(find "$kdir/modules" -name '*.ko')
  order=()
  add_module() {
    local m=${1//-/_} d deps
    [ -n "${done_mod[$m]:-}" ] && return 0
    [ -n "${kofile[$m]:-}" ] || die "kernel module $m not in $kdir/modules"
    deps=$(tr '\0' '\n' <"${kofile[$m]}" | sed -n 's/^depends=//p' | head -1)
    for d in ${deps//,/ }; do add_module "$d"; done
    done_mod[$m]=1
    order+=("$m")
    cp "${kofile[$m]}" "$root/modules/$m.ko"
  }
  for m in "${modules[@]}"; do add_module "$m"; done
  printf '%s\n' "${order[@]}" >"$root/modules/order"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.part"
  mv "$initrd.part" "$initrd"
  rm -rf "$root"
  trap - EXIT
  # Old initramfs images of this kernel are stale now.
  find "$kdir" -name 'initramfs-*.cpio.gz' ! -name "$(basename "$initrd")" -delete
fi
flock -u 9

# --- one run ---------------------------------------------------------------------------

# The guest reads the command from here (same absolute path: it sees the host's "/").
mkdir -p "$cache/runs"
run=$(mktemp -d "$cache/runs/XXXXXX")
trap 'rm -rf "$run"' EXIT
{
  echo "# generated by vagrant/run-lsm.sh"
  printf 'export PATH=%q\n' "$PATH"
  while IFS= read -r v; do
    case "$v" in AGENTCAGE_VM_*) continue ;; esac
    printf 'export %s=%q\n' "$v" "${!v}"
  done < <(compgen -e | grep -E '^(GTEST_|AGENTCAGE_)' || true)
  printf 'cd %q || exit 126\n' "$PWD"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$run/cmd"
: >"$run/status"

# ttyS0: the command's output; ttyS1: its exit status; ttyS2: the kernel's console, kept
# apart so kernel messages never mix into the command's output.
# The guest gets a fresh /tmp; a tree the command needs that lives under the host's /tmp
# (a build tree in a clone under /tmp, as CI may use) is bound back in by the guest.
keep=
for p in "$PWD" "$(readlink -f "$1" 2>/dev/null || true)"; do
  case "$p" in /tmp/?*) d="/tmp/$(echo "${p#/tmp/}" | cut -d/ -f1)"
    case ",$keep," in *",$d,"*) ;; *) keep=${keep:+$keep,}$d ;; esac ;;
  esac
done
append=(console=ttyS2 panic=-1 ac.run="$run" mitigations=off tsc=reliable no_timer_check)
[ -n "$keep" ] && append+=(ac.keep="$keep")
[ "$verbose" = 1 ] && append+=(loglevel=7) || append+=(quiet)
# shellcheck disable=SC2206 # word splitting intended: several arguments
[ -n "${AGENTCAGE_VM_APPEND:-}" ] && append+=(${AGENTCAGE_VM_APPEND})
log "booting (tcg, ${cpus} cpu, ${mem} MiB)"
start=$(date +%s.%N)
set +e
# /dev/kvm exists on the CI machines but is unusable (no vmx/svm): software emulation.
timeout --foreground -k 5 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -M pc -cpu max -smp "$cpus" -m "$mem" \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$kdir/vmlinux" -initrd "$initrd" -append "${append[*]}" \
  -chardev stdio,id=con,signal=off -serial chardev:con \
  -serial file:"$run/status" -serial file:"$run/kernel.log" \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  </dev/null
qrc=$?
set -e
[ "$verbose" = 1 ] && sed 's/^/guest kernel: /' "$run/kernel.log" >&2
log "guest ran $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s, qemu exit $qrc"

status=$(sed -n 's/^exit-status \([0-9]*\).*/\1/p' "$run/status" | tail -1)
if [ -n "$status" ]; then
  exit "$status"
fi
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  die "the guest did not finish within ${timeout_s}s (AGENTCAGE_VM_TIMEOUT)" "rerun with AGENTCAGE_VM_VERBOSE=1 to see the guest kernel's log"
fi
echo "run-lsm.sh: last guest kernel messages:" >&2
tail -n 30 "$run/kernel.log" | sed 's/^/  /' >&2
if grep -q guest-init-failed "$run/status"; then
  die "the guest's init failed (see its messages above)"
fi
die "the guest stopped without reporting the command's exit status (qemu exit $qrc)" \
  "rerun with AGENTCAGE_VM_VERBOSE=1 to see the guest kernel's log"
