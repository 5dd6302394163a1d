#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the qemu guest that vagrant/run-lsm.sh boots (busybox sh, from the initramfs).
#
# Stage 1 (PID 1 in the initramfs): load the 9p/virtio/overlay modules, mount the host's
# "/" (virtio-9p, read-only) under a tmpfs overlay so the guest can write without touching
# the host, mount the kernel file systems agentcage needs (cgroup2, bpffs, securityfs,
# tracefs), then switch_root into it and re-run this script as stage 2.
# Stage 2 (PID 1 in the new root): run the one command the host asked for, its output on
# the first serial port (ttyS0; the kernel's console is ttyS2), report its exit status on the second serial port (ttyS1, a file on
# the host), and power off. PID 1 never exits: that would panic the guest.
set -u
bb=/bin/busybox

fatal() {
  echo "guest-init: $*" >/dev/ttyS0 2>/dev/null
  echo "guest-init: $*" >/dev/console
  echo "guest-init-failed" >/dev/ttyS1 2>/dev/null
  $bb sync
  $bb poweroff -f # the reboot(2) syscall itself: no init to ask
  $bb sleep 3600
}

if [ "${1:-}" != stage2 ]; then
  $bb mkdir -p /proc /sys /dev /bin
  $bb mount -t proc proc /proc
  $bb mount -t sysfs sysfs /sys
  $bb mount -t devtmpfs devtmpfs /dev
  $bb --install -s /bin
  export PATH=/bin
  # Modules in dependency order (run-lsm.sh wrote the list when it built this initramfs).
  while read -r m; do
    insmod "/modules/$m.ko" || fatal "insmod $m failed"
  done </modules/order
  mkdir -p /lower /rw /newroot
  # msize: bigger 9p messages make reading host binaries and libraries faster.
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower ||
    fatal "mount 9p hostroot failed (is qemu sharing it with mount_tag=hostroot?)"
  mount -t tmpfs -o mode=0755 tmpfs /rw
  mkdir -p /rw/upper /rw/work
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
    fatal "mount overlay failed"
  r=/newroot
  # Keep the initramfs' proc/sys/dev: switch_root moves only the new root itself.
  mount -o move /proc $r/proc
  mount -o move /sys $r/sys
  mount -o move /dev $r/dev
  mount -t cgroup2 cgroup2 $r/sys/fs/cgroup || fatal "mount cgroup2 failed"
  mount -t bpf bpf $r/sys/fs/bpf || fatal "mount bpffs failed"
  mount -t securityfs securityfs $r/sys/kernel/security || fatal "mount securityfs failed"
  mount -t tracefs tracefs $r/sys/kernel/tracing 2>/dev/null || true
  mkdir -p $r/dev/pts $r/dev/shm
  mount -t devpts devpts $r/dev/pts
  mount -t tmpfs tmpfs $r/dev/shm
  mount -t tmpfs -o mode=0755 tmpfs $r/run
  mkdir -p $r/run/agentcage-vm
  cp /bin/busybox /init $r/run/agentcage-vm/
  # The host wrote the command into its run directory; take it before /tmp is replaced
  # (the run directory may live under the host's /tmp).
  run=
  keep=
  for w in $(cat $r/proc/cmdline); do
    case "$w" in ac.run=*) run=${w#ac.run=} ;; ac.keep=*) keep=${w#ac.keep=} ;; esac
  done
  [ -n "$run" ] && cp "$r$run/cmd" $r/run/agentcage-vm/cmd ||
    fatal "no command: ac.run= missing or $run/cmd unreadable"
  # A plain tmpfs /tmp (not the overlay): tests create files there and key BPF maps by
  # their (dev, inode), which is simplest to reason about on a single-layer file system.
  mkdir -p $r/run/agentcage-vm/hosttmp
  mount -o bind $r/tmp $r/run/agentcage-vm/hosttmp
  mount -t tmpfs -o mode=1777 tmpfs $r/tmp
  # Trees under the host's /tmp the command needs (ac.keep=/tmp/a,/tmp/b), bound back.
  for k in $(echo "$keep" | tr ',' ' '); do
    mkdir -p "$r$k" && mount -o bind "$r/run/agentcage-vm/hosttmp/${k#/tmp/}" "$r$k" ||
      fatal "cannot show $k in the guest"
  done
  exec switch_root $r /run/agentcage-vm/busybox sh /run/agentcage-vm/init stage2
  fatal "switch_root failed"
fi

# Stage 2.
bb=/run/agentcage-vm/busybox
# Raw output: no \n -> \r\n translation on the serial console.
$bb stty -F /dev/ttyS0 -onlcr 2>/dev/null
/bin/bash /run/agentcage-vm/cmd </dev/null >/dev/ttyS0 2>&1
rc=$?
echo "exit-status $rc" >/dev/ttyS1
$bb sync
$bb poweroff -f
$bb sleep 3600
