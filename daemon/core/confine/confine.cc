// SPDX-License-Identifier: Apache-2.0
#include "core/confine/confine.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/confine/caps.h"
#include "core/confine/cgroup.h"

namespace agentcage::core {
namespace {

#ifndef SECCOMP_GET_ACTION_AVAIL
#define SECCOMP_GET_ACTION_AVAIL 2
#endif

bool seccomp_action_available(uint32_t action) {
  return ::syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
}

std::string join_ports(const std::vector<uint16_t>& v) {
  std::string s;
  for (auto p : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(p);
  }
  return s.empty() ? "none" : s;
}

}  // namespace

KernelFeatures probe_kernel_features() {
  KernelFeatures kf;
  kf.landlock_abi = landlock_probe_abi();
  // prctl(PR_GET_SECCOMP) fails with EINVAL without CONFIG_SECCOMP; the filter mode is
  // probed through the action query, which needs CONFIG_SECCOMP_FILTER.
  kf.seccomp_filter = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 && seccomp_action_available(SECCOMP_RET_ERRNO);
  kf.seccomp_kill_process = seccomp_action_available(SECCOMP_RET_KILL_PROCESS);
  kf.seccomp_log = seccomp_action_available(SECCOMP_RET_LOG);
  kf.cap_last_cap = cap_last_cap();
  return kf;
}

PreparedConfinement::~PreparedConfinement() {
  if (!masks_.empty_file.empty()) ::unlink(masks_.empty_file.c_str());
  if (!masks_.new_root.empty()) ::rmdir(masks_.new_root.c_str());
  if (!scratch_.empty()) ::rmdir(scratch_.c_str());
}

Result<std::unique_ptr<PreparedConfinement>> prepare_confinement(const ConfinePolicy& policy, const KernelFeatures& kf,
                                                                 const ConfineContext& ctx) {
  std::unique_ptr<PreparedConfinement> pc(new PreparedConfinement());
  pc->cwd_ = ctx.cwd;  // without a view; the view's own cwd below replaces it
  pc->policy_ = policy;
  pc->cap_last_cap_ = kf.cap_last_cap;
  const bool enforce = !policy.audit_mode;
  auto& prov = pc->provenance_;

  // A required feature that is missing stops the run in enforce mode; audit mode records
  // the gap and carries on.
  auto missing = [&](const std::string& mech, const std::string& feature, const std::string& hint) -> Status {
    if (enforce)
      return error(fmt::format("{} is required by the profile but not available on this kernel", feature),
                   hint + "; or run with mode: audit to start without it");
    spdlog::warn("audit mode: {} unavailable, not enforced", feature);
    prov.push_back({mech, feature + " unavailable", false});
    return {};
  };

  for (const auto& r : policy.fs.required) {
    struct stat st{};
    if (::stat(r.c_str(), &st) != 0)
      return sys_error(fmt::format("filesystem: required path {}", r), errno, "create it, or remove it from the profile's required paths");
  }

  // --- seccomp ---
  if (!kf.seccomp_filter) {
    if (auto st = missing("seccomp", "seccomp filtering", "the kernel needs CONFIG_SECCOMP_FILTER=y"); !st)
      return std::unexpected(st.error());
  } else {
    SeccompPolicy sp = policy.seccomp;
    if (sp.action == SeccompAction::kill && !kf.seccomp_kill_process) {
      if (auto st = missing("seccomp", "SECCOMP_RET_KILL_PROCESS", "use syscalls.action: errno, or a kernel >= 4.14"); !st)
        return std::unexpected(st.error());
      sp.action = SeccompAction::errno_ret;
    }
    auto c = compile_seccomp(sp, policy.audit_mode);
    if (!c) return std::unexpected(c.error());
    pc->seccomp_ = std::move(*c);
    std::string action = policy.audit_mode ? "log (audit mode)"
                         : sp.action == SeccompAction::kill ? "kill process"
                         : sp.action == SeccompAction::log ? "log"
                                                           : fmt::format("errno {}", sp.errno_value);
    prov.push_back({"seccomp",
                    fmt::format("{} filter(s), {} denied syscall rules, action {}, non-native ABIs killed, clone3 -> ENOSYS",
                                pc->seccomp_.programs.size(), pc->seccomp_.denied.size(), action),
                    !policy.audit_mode});
  }

  // --- Landlock ---
  bool wants_landlock = policy.fs.restrict || policy.net.restrict || policy.scope_signals || policy.scope_abstract_unix;
  if (wants_landlock && kf.landlock_abi < 1) {
    if (policy.fs.restrict) {
      if (auto st = missing("landlock", "Landlock", "boot with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y, lsm=...,landlock)"); !st)
        return std::unexpected(st.error());
    } else {
      prov.push_back({"landlock", "Landlock unavailable: network ports and scoping not enforced", false});
    }
  } else if (wants_landlock) {
    LandlockInput in;
    if (policy.fs.restrict) {
      in.read = policy.fs.read;
      in.write = policy.fs.write;
      in.exec = policy.fs.exec;
    }
    in.restrict_net = policy.net.restrict;
    in.bind_tcp = policy.net.bind_tcp;
    in.connect_tcp = policy.net.connect_tcp;
    in.scope_signal = policy.scope_signals;
    in.scope_abstract_unix = policy.scope_abstract_unix;
    pc->landlock_ = compile_landlock(in, kf.landlock_abi, [](const std::string& p) {
      struct stat st{};
      return ::stat(p.c_str(), &st) != 0 || S_ISDIR(st.st_mode);
    });
    if (!policy.fs.restrict) pc->landlock_.handled_fs = 0;
    if (policy.net.restrict && policy.require_net_ports && kf.landlock_abi < 4)
      if (auto st = missing("landlock", "Landlock TCP port rules (ABI 4)", "use a kernel with Landlock ABI >= 4 (Linux 6.7+)"); !st)
        return std::unexpected(st.error());
    if ((policy.scope_signals || policy.scope_abstract_unix) && policy.require_scoping && kf.landlock_abi < 6)
      if (auto st = missing("landlock", "Landlock scoping (ABI 6)", "use a kernel with Landlock ABI >= 6 (Linux 6.12+)"); !st)
        return std::unexpected(st.error());
    for (const auto& u : pc->landlock_.unenforced) {
      spdlog::warn("landlock: not enforced on this kernel: {}", u);
      prov.push_back({"landlock", u, false});
    }
    const auto& pl = pc->landlock_;
    prov.push_back({"landlock",
                    fmt::format("abi {}: fs=[{}] on {} paths; tcp bind={} connect={}; scoped={}", pl.abi,
                                landlock_fs_rights_names(pl.handled_fs), pl.paths.size(),
                                pl.handled_net ? join_ports(policy.net.bind_tcp) : "unrestricted",
                                pl.handled_net ? join_ports(policy.net.connect_tcp) : "unrestricted",
                                fmt::format("{}{}", pl.scoped & ll::kScopeSignal ? "signal " : "",
                                            pl.scoped & ll::kScopeAbstractUnix ? "abstract_unix" : "")),
                    enforce});
    // Nothing handled (e.g. scoping asked on an ABI < 6 with no filesystem rules): the
    // kernel rejects an empty ruleset, and there would be nothing to enforce anyway.
    bool empty = pl.handled_fs == 0 && pl.handled_net == 0 && pl.scoped == 0;
    if (enforce && !empty) {
      // With a fresh procfs in the view, rules on /proc must name the new instance's
      // inodes (Landlock rules are inode-bound): the child adds them after mounting.
      bool view = policy.fs.restrict && policy.fs.private_view;
      bool fresh_proc = view && policy.fs.fresh_proc;
      bool fresh_dev = view && policy.fs.minimal_dev;
      bool fresh_tmp = view && policy.fs.private_tmp;
      auto defer = [&](const std::string& path) {
        return (fresh_proc && path_within(path, "/proc")) || (fresh_dev && path_within(path, "/dev")) ||
               (fresh_tmp && path == "/tmp");
      };
      for (const auto& r : pl.paths)
        if (defer(r.path)) pc->late_rules_.push_back(r);
      auto rs = landlock_build_ruleset(pl, defer);
      if (!rs) return std::unexpected(rs.error());
      pc->ruleset_ = std::move(*rs);
    }
  }

  // --- the filesystem view and the masks ---
  bool want_view = policy.fs.restrict && policy.fs.private_view;
  if (!policy.fs.deny.empty() || want_view) {
    bool view = want_view && mount_setattr_supported();
    if (want_view && !view) {
      if (auto st = missing("mount_mask", "mount_setattr(2) for the private filesystem view",
                            "use Linux 5.12+, or set the view off (Landlock alone then guards the filesystem)");
          !st)
        return std::unexpected(st.error());
    }
    MountViewInput vin;
    vin.read = policy.fs.read;
    vin.write = policy.fs.write;
    vin.exec = policy.fs.exec;
    vin.deny = policy.fs.deny;
    vin.private_view = view;
    vin.fresh_proc = policy.fs.fresh_proc;
    vin.minimal_dev = policy.fs.minimal_dev;
    vin.private_tmp = policy.fs.private_tmp;
    vin.tmp_size = policy.fs.tmp_size;
    vin.cwd = ctx.cwd;
    pc->scratch_ = ctx.scratch_dir + "/" + (ctx.sandbox_id.empty() ? std::to_string(::getpid()) : ctx.sandbox_id);
    auto m = prepare_mount_mask(vin, pc->scratch_);
    if (!m) return std::unexpected(m.error());
    pc->masks_ = std::move(*m);
    pc->apply_masks_ = enforce;
    if (enforce && view) pc->cwd_ = pc->masks_.cwd;
    // Listing the view's own directories (`ls /`, a parent of the workspace) is harmless:
    // they hold only the trees the profile shows. Landlock grants READ_DIR on the view's
    // root tmpfs, added in the child after pivot_root so it names that inode, never the
    // host's root (which would open every host directory to listing). Read rights inside
    // the trees are unchanged: READ_DIR alone lists names, it opens no file.
    if (pc->ruleset_ && enforce && view && (pc->landlock_.handled_fs & ll::kReadDir)) {
      LandlockPathRule root{"/", ll::kReadDir};
      pc->late_rules_.push_back(root);
      pc->landlock_.paths.push_back(root);
    }
    if (!pc->masks_.entries.empty())
      prov.push_back({"mount_mask", fmt::format("{} deny paths masked in a private mount namespace", pc->masks_.entries.size()), enforce});
    if (view)
      prov.push_back({"mount_view", fmt::format("private root: {} trees shown ({} writable), the rest absent{}",
                                                pc->masks_.visible.size(), pc->masks_.writable.size(),
                                                fmt::format("{}{}{}; every tree nosuid{}",
                                                            policy.fs.fresh_proc ? "; own procfs with hidepid=invisible" : "",
                                                            policy.fs.minimal_dev ? "; minimal /dev" : "",
                                                            policy.fs.private_tmp ? "; private /tmp" : "",
                                                            policy.fs.minimal_dev ? ",nodev" : "")),
                      enforce});
  }

  // --- resource limits (cgroup controllers) ---
  std::optional<std::string> mountinfo;
  auto cgroup_limit = [&](LimitSpec spec, const std::string& what) -> Result<const CgroupLimit*> {
    if (!mountinfo) {
      auto mi = read_file("/proc/self/mountinfo");
      if (!mi) return std::unexpected(mi.error());
      mountinfo = std::move(*mi);
    }
    std::string mech = spec.controller;
    auto l = CgroupLimit::create(std::move(spec), ctx.cgroup2_path, ctx.sandbox_id, *mountinfo);
    if (!l) {
      if (enforce) return std::unexpected(l.error());
      spdlog::warn("audit mode: {}", l.error().message());
      prov.push_back({mech, "no " + mech + " controller: " + what + " not enforced", false});
      return nullptr;
    }
    pc->limits_.push_back(std::move(*l));
    prov.push_back({mech, what + " via " + pc->limits_.back().describe(), true});
    return &pc->limits_.back();
  };
  if (policy.max_pids > 0)
    if (auto l = cgroup_limit(pids_limit_spec(policy.max_pids), fmt::format("max {}", policy.max_pids)); !l)
      return std::unexpected(l.error());
  if (policy.memory_max > 0) {
    std::string what = fmt::format("max {} bytes for the whole sandbox, swap included", policy.memory_max);
    if (!mountinfo) {
      auto mi = read_file("/proc/self/mountinfo");
      if (!mi) return std::unexpected(mi.error());
      mountinfo = std::move(*mi);
    }
    auto spec = memory_limit_spec(policy.memory_max);
    if (!policy.unprivileged && CgroupLimit::probe(spec, ctx.cgroup2_path, *mountinfo) != LimitMechanism::none) {
      auto l = cgroup_limit(std::move(spec), what);
      if (!l) return std::unexpected(l.error());
      if (*l) pc->memory_by_ = (*l)->describe();
    } else {
      // No memory cgroup to write (none mounted or enabled, or no root): the documented
      // fallback bounds each process's address space instead. Weaker (per process, virtual
      // not resident, a failed allocation instead of an OOM kill, so nothing to report),
      // and said so.
      auto& rl = pc->policy_.rlimits;
      auto as = std::find_if(rl.begin(), rl.end(), [](const RlimitSetting& r) { return r.resource == RLIMIT_AS; });
      if (as == rl.end()) {
        rl.push_back({RLIMIT_AS, policy.memory_max, policy.memory_max});
      } else {
        as->soft = std::min<rlim_t>(as->soft, policy.memory_max);
        as->hard = std::min<rlim_t>(as->hard, policy.memory_max);
      }
      pc->memory_by_ = "RLIMIT_AS";
      std::string detail = fmt::format("max {} bytes of address space per process via RLIMIT_AS ({}: allocations "
                                       "past it fail with ENOMEM, nothing is killed or reported)",
                                       policy.memory_max,
                                       policy.unprivileged ? "no memory cgroup without root" : "no memory controller");
      spdlog::warn("process.memory_max: {}", detail);
      prov.push_back({"memory", detail, true});
    }
  }
  if (policy.cpu_weight > 0 && !policy.unprivileged) {
    if (policy.cpu_weight > 10000) return error(fmt::format("process.cpu_weight: {} is outside 1-10000", policy.cpu_weight));
    if (auto l = cgroup_limit(cpu_weight_spec(policy.cpu_weight), fmt::format("weight {}", policy.cpu_weight)); !l)
      return std::unexpected(l.error());
  }

  if (policy.namespaces.net || policy.namespaces.ipc || policy.namespaces.uts || policy.namespaces.pid) {
    std::string names;
    for (auto [on, name] : {std::pair{policy.namespaces.net, "net"}, {policy.namespaces.ipc, "ipc"},
                            {policy.namespaces.uts, "uts"}, {policy.namespaces.pid, "pid (agentcage init as pid 1)"}})
      if (on) names += (names.empty() ? "" : " ") + std::string(name);
    prov.push_back({"namespaces", names, true});
  }
  if (policy.unprivileged)
    prov.push_back({"caps", "unprivileged launcher: no capabilities held; no_new_privs", true});
  else
    prov.push_back({"caps", "all capabilities dropped (bounding, ambient, permitted), securebits locked, no_new_privs", true});
  if (policy.uid || policy.gid)
    prov.push_back({"ids", fmt::format("uid {} gid {}", policy.uid ? std::to_string(*policy.uid) : "unchanged",
                                       policy.gid ? std::to_string(*policy.gid) : "unchanged"), true});
  for (const auto& r : policy.rlimits)
    if (r.resource < 0 || r.resource >= RLIM_NLIMITS) return error(fmt::format("process.rlimits: unknown resource {}", r.resource));
  return pc;
}

Status check_command_allowed(const ConfinePolicy& policy, const std::string& argv0, const std::vector<std::string>* env) {
  if (!policy.fs.restrict || policy.audit_mode || argv0.empty()) return {};
  std::string path = env ? find_in_path(argv0, path_in_env(*env)) : find_in_path(argv0);
  if (path.empty()) return {};  // the launcher reports "command not found"
  char real[PATH_MAX];
  std::string resolved = ::realpath(path.c_str(), real) ? std::string(real) : path;
  for (const auto& e : policy.fs.exec) {
    char er[PATH_MAX];
    std::string exec_real = ::realpath(e.c_str(), er) ? std::string(er) : e;
    if (path_within(resolved, exec_real)) return {};
  }
  return error(fmt::format("the command {} ({}) is not in filesystem.exec", argv0, resolved),
               "add its directory to the profile's filesystem.exec list");
}

int apply_in_child(const PreparedConfinement& pc, const char** what) {
  const ConfinePolicy& p = pc.policy_;
  for (const auto& l : pc.limits_) {
    *what = "join the v1 limit cgroups (pids, memory, cpu)";
    if (int e = l.join()) return e;
  }
  for (const auto& r : p.rlimits) {
    *what = "setrlimit";
    struct rlimit rl{r.soft, r.hard};
    if (::syscall(SYS_prlimit64, 0, r.resource, &rl, nullptr) != 0) return errno;
  }
  int ns = (p.namespaces.net ? CLONE_NEWNET : 0) | (p.namespaces.ipc ? CLONE_NEWIPC : 0) | (p.namespaces.uts ? CLONE_NEWUTS : 0);
  if (ns) {
    *what = "unshare(CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS)";
    if (::unshare(ns) != 0) return errno;
  }
  if (pc.apply_masks_)
    if (int e = mount_mask_apply(pc.masks_, what)) return e;
  if (!p.unprivileged) {
    *what = "prctl(PR_SET_SECUREBITS)";
    if (int e = caps_lock_securebits()) return e;
  }
  if (p.uid || p.gid) {
    *what = "uid/gid switch";
    uid_t uid = p.uid ? *p.uid : ::getuid();
    gid_t gid = p.gid ? *p.gid : ::getgid();
    if (int e = switch_ids(uid, gid, p.groups.data(), p.groups.size())) return e;
  }
  // With the command's own ids (and, without a view, the first chdir at all: agentcaged's
  // working directory is not the caller's).
  if (!pc.cwd_.empty() && ::chdir(pc.cwd_.c_str()) != 0 && ::chdir("/") != 0) {
    *what = "chdir to the working directory";
    return errno;
  }
  if (!p.unprivileged) {
    *what = "drop capabilities";
    if (int e = caps_drop_all(pc.cap_last_cap_)) return e;
  }
  *what = "prctl(PR_SET_NO_NEW_PRIVS)";
  if (int e = set_no_new_privs()) return e;
  if (pc.ruleset_) {
    for (const auto& r : pc.late_rules_) {
      *what = "landlock_add_rule for a path in the view";
      if (int e = landlock_add_path_rule(pc.ruleset_.get(), r.path.c_str(), r.rights)) return e;
    }
    *what = "landlock_restrict_self";
    if (int e = landlock_restrict_self(pc.ruleset_.get())) return e;
  }
  for (const auto& prog : pc.seccomp_.programs) {
    *what = "seccomp(SECCOMP_SET_MODE_FILTER)";
    if (int e = seccomp_install(prog, pc.seccomp_.log)) return e;
  }
  return 0;
}

std::optional<Violation> attribute_exit(const ConfineDecisions& d, int signal, bool oom_killed) {
  // The limit holds in audit mode too (limits are not audited), so its kill is reported
  // there as well.
  if (signal == SIGKILL && oom_killed && d.policy.memory_max > 0 && d.memory_by.starts_with("cgroup"))
    return Violation{"memory-limit", fmt::format("process.memory_max: {} ({})", d.policy.memory_max, d.memory_by)};
  if (signal != SIGSYS || d.policy.audit_mode || d.policy.seccomp.action != SeccompAction::kill) return std::nullopt;
  return Violation{"seccomp", "syscalls: a denied system call (action: kill)"};
}

// --- attribution ---
namespace {

// The Landlock right an operation needed, from the syscall and its flags.
uint64_t needed_right(const FailedOp& op) {
  switch (op.nr) {
    case SYS_open:
    case SYS_openat:
    case SYS_openat2:
    case SYS_creat: {
      if (op.nr == SYS_creat) return ll::kMakeReg;
      int f = op.open_flags < 0 ? O_RDONLY : op.open_flags;
      uint64_t r = 0;
      if ((f & O_ACCMODE) == O_RDONLY) r |= (f & O_DIRECTORY) ? ll::kReadDir : ll::kReadFile;
      if ((f & O_ACCMODE) == O_WRONLY || (f & O_ACCMODE) == O_RDWR) r |= ll::kWriteFile;
      if ((f & O_ACCMODE) == O_RDWR) r |= ll::kReadFile;
      if (f & O_TRUNC) r |= ll::kTruncate;
      if (f & O_CREAT) r |= ll::kMakeReg;
      return r;
    }
    case SYS_execve:
    case SYS_execveat: return ll::kExecute;
    case SYS_unlink:
    case SYS_unlinkat: return ll::kRemoveFile;
    case SYS_rmdir: return ll::kRemoveDir;
    case SYS_mkdir:
    case SYS_mkdirat: return ll::kMakeDir;
    case SYS_mknod:
    case SYS_mknodat: return ll::kMakeReg;
    case SYS_symlink:
    case SYS_symlinkat: return ll::kMakeSym;
    case SYS_link:
    case SYS_linkat:
    case SYS_rename:
    case SYS_renameat:
    case SYS_renameat2: return ll::kRefer | ll::kMakeReg;
    case SYS_truncate:
    case SYS_ftruncate: return ll::kTruncate;
    case SYS_getdents64:
    case SYS_getdents: return ll::kReadDir;
    default: return 0;
  }
}

bool is_fs_denial(int err) { return err == EACCES || err == EPERM || err == EXDEV; }

}  // namespace

ConfineDecisions PreparedConfinement::decisions() const {
  return ConfineDecisions{policy_, landlock_, static_cast<bool>(ruleset_), seccomp_.denied, masks_, apply_masks_,
                          memory_by_};
}

std::optional<Violation> attribute(const PreparedConfinement& pc, const FailedOp& op) { return attribute(pc.decisions(), op); }

std::optional<Violation> attribute(const ConfineDecisions& dec, const FailedOp& op) {
  const ConfinePolicy& p = dec.policy;
  // A process-creating call refused with EAGAIN: the pids controller's answer at max
  // (RLIMIT_NPROC gives the same errno, so only a sandbox with a pids limit is judged).
  bool creates = op.nr == SYS_clone || op.nr == SYS_clone3 || op.nr == SYS_fork || op.nr == SYS_vfork;
  if (creates && op.err == EAGAIN)
    return p.max_pids > 0 ? std::optional<Violation>(Violation{"pids-limit", fmt::format("process.max_pids: {}", p.max_pids)})
                          : std::nullopt;
  // seccomp: the errno it returns for a syscall in the deny set. (A kill shows up as an
  // exit by SIGSYS instead, attributed from the exit event.)
  bool errno_mode = !p.audit_mode && p.seccomp.action == SeccompAction::errno_ret;
  if (errno_mode && op.err == p.seccomp.errno_value) {
    for (const auto& d : dec.seccomp_denied) {
      if (d.nr != op.nr) continue;
      if (d.rule == "builtin" || d.rule == "profile")
        return Violation{"seccomp", fmt::format("syscalls.deny: {} ({})", d.name, d.rule)};
      if (!d.conds.empty()) {
        bool all = op.has_args;
        for (const auto& c : d.conds)
          all = all && c.arg < 6 && (((op.args[c.arg] & c.mask) == c.value) != c.ne);
        if (all) return Violation{"seccomp", fmt::format("syscalls.deny: {} with {} (builtin)", d.name, d.rule)};
        continue;
      }
      if (!op.has_args) return Violation{"seccomp", fmt::format("syscalls.deny: {} with {} (builtin)", d.name, d.rule)};
      bool foreign = d.rule.find("!=") != std::string::npos;
      bool match = (foreign && (op.args[0] != (d.name == "ioprio_set" ? 1u : 0u) || op.args[1] != 0)) ||
                   (d.name == "ioctl" && ((op.args[1] & 0xffffffffu) == TIOCSTI && d.rule.find("TIOCSTI") != std::string::npos)) ||
                   (d.name == "ioctl" && ((op.args[1] & 0xffffffffu) == TIOCLINUX && d.rule.find("TIOCLINUX") != std::string::npos)) ||
                   ((d.name == "clone" || d.name == "unshare") && (op.args[0] & CLONE_NEWUSER));
      if (match) return Violation{"seccomp", fmt::format("syscalls.deny: {} with {} (builtin)", d.name, d.rule)};
    }
  }
  if (!op.path.empty() && dec.masks_enforced) {
    for (const auto& m : dec.masks.entries)
      if (path_within(op.path, m.path) && (is_fs_denial(op.err) || op.err == EROFS || op.err == EBUSY))
        return Violation{"mount_mask", "filesystem.deny: " + m.path};
    if (dec.masks.private_view) {
      bool visible = false, writable = false;
      for (const auto& v : dec.masks.visible) visible |= path_within(op.path, v);
      for (const auto& w : dec.masks.writable) writable |= path_within(op.path, w);
      if (op.err == ENOENT && !visible)
        return Violation{"mount_view", "filesystem: " + op.path + " is not in read/write/exec (absent from the view)"};
      if (op.err == EROFS && !writable)
        return Violation{"mount_view", "filesystem.write: " + op.path + " is outside the write paths (read-only in the view)"};
    }
  }
  const auto& ll_plan = dec.landlock;
  if (dec.landlock_enforced) {
    if (!op.path.empty() && ll_plan.handled_fs && is_fs_denial(op.err)) {
      uint64_t need = needed_right(op) & ll_plan.handled_fs;
      if (op.judge_success) need &= ~ll::kRefer;
      if (need) {
        uint64_t granted = 0;
        for (const auto& r : ll_plan.paths)
          if (path_within(op.path, r.path)) granted |= r.rights;
        // REFER is never granted: a cross-directory link/rename is denied with EXDEV.
        uint64_t lacking = need & ~granted;
        if (lacking == ll::kExecute)
          return Violation{"landlock", fmt::format("filesystem.exec: {} is outside the exec paths", op.path)};
        if (lacking)
          return Violation{"landlock", fmt::format("filesystem: {} needs {}, not granted by read/write/exec", op.path,
                                                   landlock_fs_rights_names(lacking))};
      }
    }
    if ((op.nr == SYS_connect || op.nr == SYS_bind) && op.err == EACCES && ll_plan.handled_net) {
      uint64_t right = op.nr == SYS_connect ? ll::kNetConnectTcp : ll::kNetBindTcp;
      bool granted = false;
      for (const auto& r : ll_plan.ports) granted |= r.port == op.port && (r.rights & right);
      if (!granted)
        return Violation{"landlock", fmt::format("network: tcp {} port {} not allowed", op.nr == SYS_connect ? "connect" : "bind", op.port)};
    }
    if ((op.nr == SYS_kill || op.nr == SYS_tkill || op.nr == SYS_tgkill || op.nr == SYS_rt_sigqueueinfo ||
         op.nr == SYS_pidfd_send_signal) &&
        op.err == EPERM && (ll_plan.scoped & ll::kScopeSignal))
      return Violation{"landlock", "scope: signal to a process outside the sandbox"};
    if (op.nr == SYS_connect && op.err == EPERM && (ll_plan.scoped & ll::kScopeAbstractUnix))
      return Violation{"landlock", "scope: abstract unix socket outside the sandbox"};
  }
  return std::nullopt;
}

}  // namespace agentcage::core
