// SPDX-License-Identifier: Apache-2.0
// One sandboxed run: cgroup, optional kernel monitor, child, supervision, teardown.
// Used by `agentcage run`/`trace` in embedded mode.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "core/dns/dns_guard.h"
#include "core/sandbox/git_review.h"
#include "core/kernel/bpf_monitor.h"
#include "core/policy/net_policy.h"
#include "core/confine/confine.h"
#include "core/base/result.h"

namespace agentcage::core {

struct SessionOptions {
  std::vector<std::string> argv;   // the command; empty only in host mode (run until signalled)
  // The sandbox's key (its id is the key in hex); 0: a fresh random one. Set by a caller
  // that records the sandbox before it starts.
  uint64_t sandbox_key = 0;
  bool monitor = false;            // load the BPF monitor and report events
  // When the monitor cannot load and nothing needs it for enforcement, run without it
  // (warned) instead of refusing: `run` records when it can.
  bool monitor_optional = false;
  MonitorOptions monitor_opts;
  // Receives every decoded event, and Loss events, on the reader thread.
  std::function<void(const v1::Event&)> on_event;
  // Called on the reader thread after each batch of events (each ring-buffer poll), so a
  // sink can buffer per batch and flush once instead of once per event.
  std::function<void()> on_batch;
  // Passed to spawn(): runs in the child before execve (see SpawnOptions::child_setup).
  std::function<int(const char** what)> child_setup;
  // Descriptors above 2 the command inherits (see SpawnOptions::keep_fds); all others
  // are closed at its exec.
  std::vector<int> pass_fds;
  // The command's environment (see SpawnOptions::env); unset: this process's.
  std::optional<std::vector<std::string>> env;
  std::string cgroup_parent;       // default: <cgroup2 mount>/agentcage
  // Called with the sandbox's cgroup path once it exists, before the child is spawned
  // (e.g. so that on_record_failure can freeze or kill it from another thread). The path
  // is removed at the end of the session.
  std::function<void(const std::string& cgroup_path)> on_cgroup;
  // Network policy enforced by the cgroup BPF programs; installed before the child is
  // spawned. Setting it loads the BPF monitor even when `monitor` is false (violations
  // still reach on_event). Unset: network unrestricted (observed when monitoring).
  std::optional<NetPolicy> net_policy;

  // Files the sandbox may not open/exec, enforced by BPF LSM by inode (implies monitor).
  // The session refuses to start when BPF LSM is not active. In host mode (no argv) the
  // rules apply to every recorded process.
  std::vector<DenyRule> lsm_deny;
  // actions.exec: kill (SandboxPolicy::exec_kill): an exec refused with EACCES kills the
  // caller in the kernel, at that syscall's exit (implies monitor, which must load).
  bool exec_kill = false;

  // Confine the child (see confine.h): prepared after the cgroup exists, applied in the
  // child after child_setup. A missing required mechanism fails the session before spawn.
  std::optional<ConfinePolicy> confine;
  // Called once the confinement is prepared, before spawn (e.g. to wire attribute()).
  std::function<void(const PreparedConfinement&)> on_confined;
  // filesystem.git_config (SandboxPolicy::git_review): trees whose git configuration is
  // read before the command starts and after the sandbox is gone; each change to a key that
  // runs a program is reported (needs the monitor's reader). Files owned by git_review_uid
  // or root are read.
  std::vector<std::string> git_review;
  uid_t git_review_uid = 0;
};

struct SessionResult {
  int exit_status = 0;    // shell-style: code, or 128+signal
  std::string sandbox_id;
  uint64_t events = 0;    // events handed to on_event
  uint64_t lost = 0;      // events the kernel could not queue (ring full)
  uint64_t decode_errors = 0;
  std::vector<Provenance> enforcement;  // what confined the child, when confine was set
  std::map<std::string, uint64_t> violations;  // by mechanism: kernel-reported and attributed
  // Kernel counters (enum ac_stat) accumulated during the session: records submitted,
  // lost, truncated, read faults, ... Shown by `agentcage trace` when a loss or
  // degradation counter is non-zero.
  KernelStats kernel_stats{};
  uint64_t prog_misses = 0;  // BpfMonitor::prog_misses() over the session
};

// Runs the whole session; teardown always happens (cgroup killed and removed).
Result<SessionResult> run_session(const SessionOptions& opts);

// A random sandbox key (never 0).
uint64_t new_sandbox_key();

// The resolver options of a sandbox with network.domains, for both paths: it learns into
// `mon`'s map and hands its events to `emit` (the path's event pipeline).
DnsGuardOptions dns_guard_options(const NetPolicy& net, const std::string& sandbox_id, uint64_t key,
                                  const std::string& cgroup_path, BpfMonitor& mon, std::function<void(v1::Event)> emit);

}  // namespace agentcage::core
