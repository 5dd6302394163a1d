// SPDX-License-Identifier: Apache-2.0
// The kernel monitor: loads the BPF object (one skeleton), selects sandboxes by cgroup,
// and drains the ring buffer in batches.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <agentcage/abi.h>

#include "core/policy/net_policy.h"
#include "core/policy/lsm_policy.h"
#include "core/base/result.h"

namespace agentcage::core {

struct MonitorOptions {
  uint32_t ring_bytes = 16u << 20;   // ring buffer size, power of two >= page size
  uint32_t wakeup_bytes = 64u << 10; // wake the reader once this much is queued
  bool host_mode = false;            // record every process on the host
  bool lsm = true;                   // load the BPF LSM programs where the kernel runs them
  // Pin programs, links and maps under this bpffs directory so enforcement and recording
  // outlive the process (agentcaged): a daemon that dies leaves its sandboxes enforced,
  // and the next one adopts the pins instead of loading anew. Empty: nothing pinned, the
  // programs go with this object (in-process `run`/`trace`).
  std::string pin_dir;
};

// Per-reason kernel counters (enum ac_stat), summed over CPUs.
using KernelStats = std::array<uint64_t, AC_STAT_MAX>;
const char* stat_name(int reason);

class BpfMonitor {
 public:
  using RecordFn = std::function<void(std::span<const std::byte>)>;

  // Opens, loads and attaches the programs. Errors name the failing step and carry a
  // hint (privileges, BTF, memlock).
  static Result<std::unique_ptr<BpfMonitor>> start(const MonitorOptions& opts);
  ~BpfMonitor();

  // With MonitorOptions::pin_dir: true when this monitor took over the programs and maps
  // a previous process pinned (same BPF object), so what they enforced never stopped and
  // what the ring buffer held is still there to read.
  bool adopted() const;
  // Removes this monitor's pins (a clean stop): the programs detach once it is destroyed.
  Status unpin();
  // Removes pins under pin_dir left by another build of the BPF object: their programs
  // detach. Call only once the sandboxes they enforced are gone.
  Status remove_stale_pins();
  // Pins under pin_dir left by another build (their programs still run), for the caller
  // to decide what to do with the sandboxes they enforced.
  bool has_stale_pins() const;

  // Record the processes of cgroup `cgroup_id` as sandbox `sandbox`, with what the kernel
  // enforces on them itself (enum ac_sandbox_flag: AC_SB_EXEC_KILL), written first: the
  // sandbox is never tracked without them. Untracking removes both.
  Status track_cgroup(uint64_t cgroup_id, uint64_t sandbox, uint32_t sandbox_flags = 0);
  Status untrack_cgroup(uint64_t cgroup_id, uint64_t sandbox);
  // mode: audit (AC_SB_AUDIT_SYSCALLS): the native syscall numbers the sandbox's seccomp
  // profile would refuse, recorded by the sys_exit program whatever their result.
  Status set_audit_syscalls(uint64_t sandbox, std::span<const int> nrs);
  Status set_host_mode(bool on);

  // Network policy of a sandbox (compiled by net_policy.h compile()). The rules are
  // written before the ac_net_policy entry that switches enforcement on, so a
  // sandbox never runs with half a policy. Fails closed: a policy that restricts unix
  // sockets is refused when the kernel lacks the unix sock_addr hooks.
  Status install_net_policy(uint64_t sandbox, const CompiledNetPolicy& policy);
  Status remove_net_policy(uint64_t sandbox, const CompiledNetPolicy& policy);
  // ac_net_learned: an address a sandbox's allowed name resolved to (dns_guard.h), and
  // dropping all of a sandbox's when it closes.
  Status learn_address(uint64_t sandbox, const ac_net_learned_key& key, const ac_net_learned_value& value);
  Status forget_learned(uint64_t sandbox);
  Status unlearn_address(const ac_net_learned_key& key);  // gone already: not an error
  // ac_name_orig: where the connect of socket `cookie` sent to the name check was going,
  // taken out of the map (each is read once). nullopt: none (not such a connect).
  std::optional<ac_name_orig> take_name_origin(uint64_t cookie);
  // The kernel has cgroup/connect_unix and cgroup/sendmsg_unix (probed at start).
  bool has_unix_hooks() const;
  // BPF LSM (bpf/lsm.bpf.c): active when the kernel lists "bpf" in
  // /sys/kernel/security/lsm and the programs loaded and attached; otherwise the monitor
  // runs without them. lsm_status() says which, and why ("active", "off: ...").
  bool lsm_active() const;
  const std::string& lsm_status() const;
  // Deny the inodes of `rules` to the sandbox's tasks (ac_lsm_inodes). Fails, naming the
  // missing feature, when BPF LSM is not active: a deny rule that is not enforced must
  // not look as if it were.
  Status lsm_deny(std::span<const InodeRule> rules);
  Status lsm_forget(std::span<const InodeRule> rules);

  // Wait up to timeout_ms for the kernel to wake us, then hand every queued record to
  // fn. Also consumes after a timeout, so records below the wakeup threshold arrive
  // within one timeout. Returns the number of records handled.
  // wake() (from any thread) ends a wait early: a reader told to stop leaves at once
  // instead of sitting out its timeout (50 ms on the end of every run).
  Result<int> poll(int timeout_ms, const RecordFn& fn);
  void wake();
  // Hand every queued record to fn without waiting.
  Result<int> drain(const RecordFn& fn);

  // The kernel's flood summaries, taken (deleted) from their maps: the counts of folded
  // failures (ac_fold) idle for AC_FOLD_WINDOW_NS before `read_before_ns` (CLOCK_BOOTTIME
  // taken before the caller's last poll()/drain(), so the record each count follows has
  // been handled; `all`: every entry, at the end of a run), and the records each sandbox
  // had refused to keep the ring's reserve (ac_shed). At most every 250 ms unless `all`.
  // Reader thread, after a poll.
  using FoldFn = std::function<void(const ac_fold_key&, const ac_fold_value&)>;
  using ShedFn = std::function<void(uint64_t sandbox_key, uint64_t count)>;
  void take_summaries(uint64_t read_before_ns, bool all, const FoldFn& on_fold, const ShedFn& on_shed);

  KernelStats stats() const;
  // Runs of our programs the kernel skipped because another BPF program was already
  // running on that CPU (bpf_prog_info.recursion_misses, summed). Such a skipped run may
  // have been a record, so this is an upper bound on records lost that way; it also counts
  // skipped runs for processes nobody traces, so it is reported, not turned into Loss.
  uint64_t prog_misses() const;

  struct Impl;

 private:
  Status count_audit_sandboxes();
  explicit BpfMonitor(std::unique_ptr<Impl> impl);
  static std::unique_ptr<BpfMonitor> adopt_pinned(const MonitorOptions& opts, std::unique_ptr<Impl>& impl);
  static Result<std::unique_ptr<BpfMonitor>> load_fresh(const MonitorOptions& opts, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentcage::core
