// SPDX-License-Identifier: Apache-2.0
// The daemon's sandboxes: each owns a cgroup v2 directory, is tracked by the BPF monitor
// (its cgroup id -> sandbox key), and belongs to the uid that created it. Closing a
// sandbox (explicitly, or because its launcher died) kills everything left inside.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/control.pb.h"
#include "agentcage/v1/state.pb.h"
#include "core/dns/dns_guard.h"
#include "core/kernel/bpf_monitor.h"
#include "core/confine/cgroup.h"
#include "core/policy/net_policy.h"
#include "core/base/result.h"
#include "core/sandbox/git_review.h"
#include "core/sandbox/sandbox_policy.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

// Named in the error of a create past SandboxRegistry::set_max_per_user().
inline constexpr const char* kSandboxQuota = "agentcaged --max-sandboxes-per-user";

// The most --pass-fd descriptors a launched sandbox takes (after 0-2).
inline constexpr size_t kMaxLaunchFds = 61;

// Who is calling, as the kernel says (SO_PEERCRED).
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // Decided when the connection was accepted (SandboxRegistry::sandboxed_at_accept): the
  // process that connected ran in a sandbox, or was gone already. A connection keeps it
  // whoever holds the socket later, so a sandboxed process cannot launder a connection
  // through a child that exits (its pid then names nothing, or someone else).
  bool sandboxed = false;
  bool root() const { return uid == 0; }
};

// The resolved profile in a sandbox record: its deterministic bytes and their SHA-256.
void set_resolved_profile(v1::SandboxChange& c, const v1::Profile& p);

class SandboxRegistry {
 public:
  // cgroup_parent: where sandbox cgroups go (<cgroup2>/agentcage). mon may be null
  // (nothing recorded, sandboxes still confined to their cgroups). state_dir: where each
  // running sandbox's record (state.proto) is kept for a restarted daemon to re-adopt;
  // empty: none kept.
  SandboxRegistry(std::string cgroup_parent, BpfMonitor* mon, std::string state_dir = {})
      : parent_(std::move(cgroup_parent)), mon_(mon), state_dir_(std::move(state_dir)) {}
  ~SandboxRegistry();
  // Where the sandboxes' resolvers (network.domains) send their events: the daemon's
  // pipeline (EventPipeline::post). Set before any sandbox is created or re-adopted.
  void set_event_poster(std::function<void(v1::Event)> post) { post_event_ = std::move(post); }
  // The allowed name a sandbox's resolver learned `address` from ("" if none).
  std::string dns_name(const std::string& id, const std::string& address, uint64_t ktime_ns) const;

  // With a policy (`profile` compiled for the caller): its network policy is installed
  // for the sandbox before this returns, and its confinement decisions are kept so the
  // daemon attributes the sandbox's Landlock/seccomp denials (attribution()). The record
  // is written before the cgroup exists, so no sandbox can be left that a restarted
  // daemon does not know of.
  Result<v1::Sandbox> create(const Peer& peer, const v1::CreateSandboxRequest& req,
                             const SandboxPolicy* policy = nullptr, const v1::Profile* profile = nullptr);

  // What a start found in the state directory a previous daemon left.
  struct Readopted {
    std::vector<std::string> adopted;                         // running on, under its policy
    std::vector<std::pair<std::string, std::string>> killed;  // sandbox id, why
  };
  // Re-adopts every recorded sandbox whose cgroup and launcher still exist, when
  // `enforced` (the kernel kept enforcing while no daemon ran: the monitor adopted the
  // pinned programs and maps). Fails closed: any other recorded sandbox is killed.
  Readopted readopt(bool enforced);
  // What a running sandbox's confinement decided, for attribution; null without a profile.
  struct Attribution {
    ConfineDecisions decisions;
    bool net_reported = false;
  };
  std::shared_ptr<const Attribution> attribution(const std::string& id) const;
  // Moves `pid` (a child of the caller, same uid) into the sandbox cgroup.
  Status place(const Peer& peer, const std::string& id, pid_t pid);
  // A sandbox created with CreateSandboxRequest.launch: starts its command here, with
  // the whole confinement prepared at create, as the caller's ids, under the sandbox's
  // init. `conn` (the caller's launch connection) becomes the init's supervisor channel;
  // `fds` are the caller's 0, 1, 2 and then its --pass-fd descriptors. Only the process
  // that created the sandbox, once. Returns the init's pid.
  Result<pid_t> launch(const Peer& peer, const std::string& id, int conn, const std::vector<int>& fds);
  // The process whose child enters the sandbox: this daemon for a launched sandbox, the
  // client otherwise (for the event pipeline's setup filtering). 0 when unknown.
  uint32_t launcher_pid(const std::string& id) const;
  // `exit_status`: the command's, as the client reports it (for the record).
  Status close(const std::string& id, std::optional<int> exit_status = std::nullopt);
  Result<v1::Sandbox> get(const std::string& id) const;
  // The start time (clock ticks since boot, /proc/PID/stat field 22) of the client that
  // created sandbox `id`, with its pid; 0 when unknown. Kept after the sandbox closes:
  // the event reader can be that late with the sandbox's first records, when the client
  // has exited and /proc can no longer name it.
  uint64_t owner_start_ticks(const std::string& id) const;
  // Every sandbox, or only those of `uid`.
  std::vector<v1::Sandbox> list(std::optional<uid_t> uid, bool include_closed) const;
  // The audit store stopped (failing = true, `why` says how) or resumed recording: each
  // running sandbox whose profile says on_record_failure pause is frozen or thawed, stop is
  // killed; while it fails, creating a sandbox of such a profile is refused.
  void recording_failed(bool failing, const std::string& why);
  std::optional<uid_t> owner(const std::string& id) const;
  size_t running() const;

  // Called with a `sandbox` event (SandboxChange) at every turn of a sandbox's life:
  // created, readopted, closed, killed, and the start time (clock ticks) of its client,
  // for the client's exec_id. Runs under the registry's lock: it must only queue the
  // event (the daemon hands it to the store writer), never call back into the registry.
  using Recorder = std::function<void(v1::Event, uint64_t owner_start_ticks)>;
  void set_recorder(Recorder r) { recorder_ = std::move(r); }
  // Running sandboxes a non-root uid may hold at once (create() refuses the next with an
  // error naming the limit, kSandboxQuota in its context). 0: no limit.
  void set_max_per_user(size_t n) { max_per_user_ = n; }

  // Closes sandboxes whose launcher process has exited. Returns how many.
  int reap_orphans();
  // True when pid runs inside any agentcage sandbox cgroup (per /proc/<pid>/cgroup).
  static bool pid_in_sandbox(pid_t pid);
  // For a connection being accepted: pid_in_sandbox, failing closed: a peer whose process
  // cannot be read (gone before its connection was accepted, pid 0 from another pid
  // namespace) counts as sandboxed. A client waiting on its own connection is alive.
  static bool sandboxed_at_accept(pid_t pid);
  // A caller that may create or change sandboxes: not sandboxed at accept, nor now.
  static bool may_change(const Peer& p) { return !p.sandboxed && !pid_in_sandbox(p.pid); }

 private:
  struct Entry {
    v1::Sandbox info;
    uint64_t key = 0;
    std::unique_ptr<Cgroup> cgroup;  // null once closed
    UniqueFd owner_pidfd;
    std::optional<CompiledNetPolicy> net;          // installed while running
    uint32_t sandbox_flags = 0;                    // enum ac_sandbox_flag, with the cgroup's tracking
    std::vector<int> audit_syscalls;               // mode: audit: what seccomp would refuse
    std::unique_ptr<DnsGuard> dns;                 // network.domains: its resolver, while running
    std::shared_ptr<const DnsNames> dns_names;     // what it learned: kept after close, for the reader's lag
    std::shared_ptr<const Attribution> attribution;
    uint64_t owner_start_ticks = 0;
    std::vector<std::string> provenance;  // "mechanism: detail", from the prepared confinement
    std::string resolved_profile;          // deterministic bytes of the profile; empty: none
    v1::Profile::RecordFailure on_record_failure = v1::Profile::RECORD_FAILURE_CONTINUE;
    bool frozen = false;                   // paused by recording_failed
    // Launched by this daemon (CreateSandboxRequest.launch): what launch() starts.
    struct Launch {
      std::vector<std::string> env;  // the command's whole environment (the profile's plan)
      std::vector<int> pass_fds;     // the command's descriptor numbers after 0-2
      std::string cwd;               // the caller's working directory (entered after the uid switch)
      bool pid_namespace = false;
      bool started = false;
    };
    std::optional<Launch> launch;
    std::shared_ptr<PreparedConfinement> conf;  // applied by launch(); released at close
    // filesystem.git_config: the trees reviewed at close, as whom, and what they ran before
    // the command (unknown in a sandbox re-adopted after a restart).
    std::vector<std::string> git_review;
    uid_t git_uid = 0;
    std::vector<GitConfigSnapshot> git_before;
    bool git_before_known = false;
    pid_t init_pid = 0;                         // this daemon's child until it is reaped
  };
  Status close_locked(Entry& e, std::optional<int> exit_status = std::nullopt);
  std::string recording_failure_;  // guarded by mu_: why the store cannot record; "" if it can
  void record(const Entry& e, const std::string& phase, const std::string& reason = {},
              std::optional<int> exit_status = std::nullopt) const;
  // confined: the policy comes from a profile (whose confinement decisions attribution needs).
  Status apply_policy(Entry& e, const SandboxPolicy& policy, bool confined) const;
  void audit_syscalls(Entry& e, const ConfineDecisions& d) const;
  // For a launched sandbox, once its cgroup exists: the whole confinement, as root would
  // apply it in-process, for the caller's ids (see confine_for_caller()).
  Status prepare_launch(Entry& e, const SandboxPolicy& policy, const Peer& peer, const v1::LaunchSpec& spec);
  Status adopt_record(const v1::SandboxRecord& rec, bool enforced, Entry& e);
  std::string record_path(const std::string& id) const { return state_dir_ + "/" + id + ".pb"; }

  const std::string parent_;
  BpfMonitor* const mon_;
  std::function<void(v1::Event)> post_event_;
  const std::string state_dir_;
  mutable std::mutex mu_;  // guards entries_
  std::map<std::string, Entry> entries_;
  std::map<uid_t, size_t> creating_;  // creates under way per uid (counted against the limit)
  size_t max_per_user_ = 0;
  Recorder recorder_;
};

}  // namespace agentcage::core
