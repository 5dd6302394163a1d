// SPDX-License-Identifier: Apache-2.0
// Confinement of the sandboxed child: the ordered in-child enforcement steps.
//
// Two strict phases. prepare_confinement() runs in the parent: it allocates, probes, opens
// files, builds the Landlock ruleset, compiles seccomp with libseccomp and exports it as
// BPF, and decides fail-closed vs best effort. apply_in_child() runs in the child between
// fork and execve and only makes raw system calls on that prepared data, in this order:
//
//   1. resource limits (join the v1 pids/memory/cpu cgroups; v2 placement happened in clone3)
//   2. rlimits
//   3. namespaces (net/ipc/uts when asked), then the filesystem view and the masks for
//      filesystem.deny (private mount namespace; needs CAP_SYS_ADMIN)
//   4. securebits locked (needs CAP_SETPCAP)
//   5. uid/gid switch (optional)
//   6. all capabilities dropped
//   7. PR_SET_NO_NEW_PRIVS
//   8. Landlock (filesystem, TCP ports, signal/abstract-unix scoping)
//   9. seccomp (built-in deny set + profile rules; OCI JSON as a stacked second filter)
//
// The lead maps a Profile onto ConfinePolicy; nothing here knows about YAML.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/confine/landlock.h"
#include "core/confine/mount_mask.h"
#include "core/confine/cgroup_limit.h"
#include "core/base/paths.h"
#include "core/base/result.h"
#include "core/confine/seccomp_policy.h"

namespace agentcage::core {

struct FsPolicy {
  bool restrict = true;             // false: no Landlock filesystem rules at all
  std::vector<std::string> read;    // absolute paths (trees)
  std::vector<std::string> write;   // implies read
  std::vector<std::string> exec;    // implies read
  std::vector<std::string> deny;    // masked even inside allowed trees
  // Listed paths that must exist (e.g. the workspace): a missing one is an error instead
  // of a skipped rule (the default, as profiles list /lib64 and friends some hosts lack).
  std::vector<std::string> required;
  // The child sees only the listed trees (read/exec read-only, write read-write) in a
  // private root; see mount_mask.h for why Landlock alone is not enough for a root agent.
  bool private_view = true;
  bool fresh_proc = true;           // in the view: own procfs, other processes hidden
  bool minimal_dev = true;          // in the view: a fresh /dev with safe devices only
  bool private_tmp = true;          // in the view: a listed /tmp or /var/tmp is a private tmpfs
  uint64_t tmp_size = 1ull << 30;   // bytes per private tmpfs (/tmp, /var/tmp, /dev/shm); 0: kernel default
};

struct NetPortPolicy {
  bool restrict = false;            // Landlock TCP bind/connect (second layer behind cgroup BPF)
  std::vector<uint16_t> bind_tcp;
  std::vector<uint16_t> connect_tcp;
};

// Extra namespaces for the child (the mount namespace comes with the filesystem view).
struct NamespacePolicy {
  bool net = false;   // no network at all: only a down loopback
  bool ipc = false;   // private SysV IPC and POSIX message queues
  bool uts = false;   // private hostname
  // A pid namespace under agentcage's init. unshare(CLONE_NEWPID) only affects children,
  // so it is not applied in the child but by the launcher (SpawnOptions::pid_namespace).
  bool pid = false;
};

struct RlimitSetting {
  int resource = 0;                 // RLIMIT_*
  rlim_t soft = RLIM_INFINITY;
  rlim_t hard = RLIM_INFINITY;
};

struct ConfinePolicy {
  FsPolicy fs;
  NetPortPolicy net;
  bool scope_signals = true;        // Landlock ABI 6: no signals to processes outside
  bool scope_abstract_unix = true;  // Landlock ABI 6: no connect to abstract sockets outside
  SeccompPolicy seccomp;
  std::vector<RlimitSetting> rlimits;
  NamespacePolicy namespaces;
  uint32_t max_pids = 0;            // 0: no limit
  // Bytes for the whole sandbox: its memory cgroup's limit, swap included; RLIMIT_AS per
  // process where no memory controller is there (an unprivileged launcher). 0: no limit.
  uint64_t memory_max = 0;
  uint32_t cpu_weight = 0;          // 1-10000, cgroup v2 cpu.weight scale; 0: the default
  std::optional<uid_t> uid;         // switch to this uid (and gid, groups) when set
  std::optional<gid_t> gid;
  std::vector<gid_t> groups;
  // Learning mode: a mechanism the kernel lacks is a warning instead of an error, seccomp
  // denials are logged instead of enforced, and Landlock and the masks are not applied
  // (they cannot log without denying). Privilege drops and limits still apply.
  bool audit_mode = false;
  // Features whose absence refuses to start in enforce mode. Landlock filesystem rules,
  // seccomp and the pids limit (when max_pids > 0) are always required; these are opt-in.
  bool require_net_ports = false;   // Landlock ABI 4
  bool require_scoping = false;     // Landlock ABI 6
  // The child runs without capabilities (an unprivileged launcher): securebits and the
  // bounding-set drop need CAP_SETPCAP and there is nothing to drop; no_new_privs keeps
  // it from gaining any through execve.
  bool unprivileged = false;
};

// What this kernel offers; probed once, passed in so decisions are testable.
struct KernelFeatures {
  int landlock_abi = 0;             // 0: no Landlock
  bool seccomp_filter = false;
  bool seccomp_kill_process = false;
  bool seccomp_log = false;
  int cap_last_cap = 40;
};
KernelFeatures probe_kernel_features();

struct ConfineContext {
  std::string sandbox_id;           // names the v1 pids cgroup and the scratch dir
  std::string cgroup2_path;         // the sandbox's v2 cgroup
  std::string scratch_dir = kRunDir;
  std::string cwd;                  // the command's working directory; empty: this process's
};

// One line per mechanism of what is enforced and by what ("enforcement provenance").
struct Provenance {
  std::string mechanism;  // "landlock", "seccomp", "mount_mask", "pids", "caps", "rlimit", "ids"
  std::string detail;     // "abi 7: fs=read_file|..., net=bind_tcp|connect_tcp, scoped=signal|abstract_unix"
  bool enforced = true;   // false: requested but not enforced (audit mode / missing feature)
};

class PreparedConfinement;

// Parent side. Errors name the missing feature and carry a hint.
Result<std::unique_ptr<PreparedConfinement>> prepare_confinement(const ConfinePolicy& policy, const KernelFeatures& kf,
                                                                 const ConfineContext& ctx);

// Parent side, before spawn: the command must be executable under the policy, otherwise
// the child would fail with a bare ENOENT/EACCES from execve inside the view. `argv0` is
// looked up in PATH when it has no '/': in `env`'s PATH when given (the command's own
// environment, SpawnOptions::env), else in this process's. Pure apart from the PATH lookup.
Status check_command_allowed(const ConfinePolicy& policy, const std::string& argv0,
                             const std::vector<std::string>* env = nullptr);

// Child side: the ordered steps above. 0 or errno; `what` names the failed step.
int apply_in_child(const PreparedConfinement& pc, const char** what);

// A failed operation the monitor observed in the sandbox.
struct FailedOp {
  long nr = -1;             // x86_64 syscall number
  int err = 0;              // positive errno
  std::string path;         // resolved path, when the syscall has one
  int open_flags = -1;      // for open/openat/openat2
  int port = -1;            // for connect/bind
  bool has_args = false;
  uint64_t args[6] = {};
  // Audit mode: an action that succeeded, judged as enforcing would. Landlock asks for
  // REFER only on a move across directories, which the record does not tell apart.
  bool judge_success = false;
};

struct Violation {
  std::string mechanism;    // "seccomp", "landlock", "mount_mask", "mount_view"
  std::string rule;         // the rule that denied, in profile terms
};


// What was decided for a sandbox, kept for attribution (plain data, copyable).
struct ConfineDecisions {
  ConfinePolicy policy;
  LandlockPlan landlock;
  bool landlock_enforced = false;
  std::vector<SeccompDenied> seccomp_denied;
  MountMaskPlan masks;
  bool masks_enforced = false;
  // What holds process.memory_max: "cgroup v1 memory.limit_in_bytes", "RLIMIT_AS"; empty: no limit.
  std::string memory_by;
};

// Which of our mechanisms most plausibly denied `op`; nullopt when none of our rules
// explains it (ENOENT, a plain DAC denial inside an allowed tree, ...). Landlock and
// the masks do not report their denials, so this is how violations get attributed.
// Pure: unit-tested.
std::optional<Violation> attribute(const ConfineDecisions& d, const FailedOp& op);
std::optional<Violation> attribute(const PreparedConfinement& pc, const FailedOp& op);

// A process of the sandbox died by `signal`: SIGSYS under the kill action is seccomp's; a
// SIGKILL the kernel's OOM killer sent (`oom_killed`, from the task) is the memory limit's
// when the sandbox has one (without one it was the host's memory, not a rule).
std::optional<Violation> attribute_exit(const ConfineDecisions& d, int signal, bool oom_killed = false);

class PreparedConfinement {
 public:
  ~PreparedConfinement();
  const std::vector<Provenance>& provenance() const { return provenance_; }
  const LandlockPlan& landlock() const { return landlock_; }
  const CompiledSeccomp& seccomp() const { return seccomp_; }
  const MountMaskPlan& masks() const { return masks_; }
  const ConfinePolicy& policy() const { return policy_; }
  ConfineDecisions decisions() const;

 private:
  friend Result<std::unique_ptr<PreparedConfinement>> prepare_confinement(const ConfinePolicy&, const KernelFeatures&,
                                                                          const ConfineContext&);
  friend int apply_in_child(const PreparedConfinement&, const char**);
  PreparedConfinement() = default;

  ConfinePolicy policy_;
  std::vector<Provenance> provenance_;
  std::vector<CgroupLimit> limits_;  // joined in the child, removed on destruction
  std::string memory_by_;            // ConfineDecisions::memory_by
  MountMaskPlan masks_;
  bool apply_masks_ = false;
  LandlockPlan landlock_;
  UniqueFd ruleset_;                 // -1: Landlock not applied
  CompiledSeccomp seccomp_;
  // Landlock rules for trees that only exist once the view is built (the fresh /proc):
  // opened and added in the child, after the mounts, before restrict_self.
  std::vector<LandlockPathRule> late_rules_;
  int cap_last_cap_ = 40;
  std::string scratch_;              // removed on destruction
  // Where the command continues, entered again after the uid switch: resolved with the
  // caller's permissions, not root's (a path component swapped for a symlink between the
  // request and the launch cannot take it into a directory it could not reach).
  std::string cwd_;
};

}  // namespace agentcage::core
