// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/sandbox_policy.h"

#include "core/policy/profile_seccomp.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <pwd.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include "core/confine/cgroup.h"
#include "core/policy/profile.h"
#include "core/base/text.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {
namespace {

using P = v1::Profile;

NetAction net_action(P::Action a) {
  switch (a) {
    case P::ACTION_KILL: return NetAction::kill;
    case P::ACTION_AUDIT: return NetAction::audit;
    default: return NetAction::deny;
  }
}

NetProto net_proto(P::Protocol p) {
  switch (p) {
    case P::PROTOCOL_TCP: return NetProto::tcp;
    case P::PROTOCOL_UDP: return NetProto::udp;
    default: return NetProto::any;
  }
}

Result<std::optional<NetPolicy>> compile_network(const P& p, const PolicyContext& ctx, bool audit) {
  P::Action def = p.actions().network() == P::ACTION_UNSPECIFIED ? P::ACTION_DENY : p.actions().network();
  if (def == P::ACTION_ALLOW) {
    // Names only mean something where addresses are refused unless allowed.
    if (!p.network().domains().empty())
      return error("network.domains needs actions.network to refuse what they do not allow; it is allow",
                   "set actions.network: deny (or audit, to only report)");
    return std::optional<NetPolicy>{};  // unrestricted (still observed)
  }
  NetPolicy n;
  n.default_action = net_action(def);
  n.audit_mode = audit;
  for (const auto& r : p.network().rules()) {
    P::Action a = r.action() == P::ACTION_UNSPECIFIED ? P::ACTION_ALLOW : r.action();
    if (a == P::ACTION_ALLOW) {
      if (r.ports().empty()) {
        n.allow.push_back(NetRule{r.cidr(), 1, 65535, net_proto(r.protocol())});
      } else {
        for (const auto& pr : r.ports())
          n.allow.push_back(NetRule{r.cidr(), static_cast<uint16_t>(pr.lo()),
                                    static_cast<uint16_t>(pr.hi() ? pr.hi() : pr.lo()), net_proto(r.protocol())});
      }
      continue;
    }
    // deny / kill / audit rules carve their prefix out of wider allows, on every port.
    if (!r.ports().empty() || (r.protocol() != P::PROTOCOL_UNSPECIFIED && r.protocol() != P::PROTOCOL_ANY))
      return error(fmt::format("network rule {}: a {} rule applies to the whole prefix; ports and protocol are "
                               "only supported on allow rules",
                               r.cidr(), a == P::ACTION_KILL ? "kill" : a == P::ACTION_AUDIT ? "audit" : "deny"),
                   "drop ports/protocol from the rule, or allow the ports you want instead");
    n.block.push_back(NetBlock{r.cidr(), net_action(a)});
  }
  n.dns_resolvers = dns_servers(p, ctx.resolv_conf);
  for (const auto& d : p.network().domains()) {
    DomainRule r;
    auto name = parse_domain_pattern(d.name());
    if (!name) return std::unexpected(name.error());
    r.pattern = *name;
    for (const auto& pr : d.ports())
      r.ports.emplace_back(static_cast<uint16_t>(pr.lo()), static_cast<uint16_t>(pr.hi() ? pr.hi() : pr.lo()));
    if (r.ports.size() > AC_NET_LEARNED_RANGES)
      return error(fmt::format("network.domains {}: {} port ranges (at most {})", r.pattern, r.ports.size(),
                               AC_NET_LEARNED_RANGES));
    r.proto = net_proto(d.protocol());
    switch (d.action()) {
      case P::ACTION_UNSPECIFIED:
      case P::ACTION_ALLOW: r.action = DomainAction::allow; break;
      case P::ACTION_AUDIT: r.action = DomainAction::audit; break;
      case P::ACTION_DENY: r.action = DomainAction::deny; break;
      case P::ACTION_KILL: r.action = DomainAction::kill; break;
      default:
        return error(fmt::format("network.domains {}: unknown action {}", r.pattern, static_cast<int>(d.action())));
    }
    r.comment = d.comment();
    n.domains.push_back(std::move(r));
  }
  if (p.network().has_learned_grace_seconds()) n.learned_grace_s = p.network().learned_grace_seconds();
  if (p.network().has_check_names()) n.check_names = p.network().check_names();
  n.allow_unnamed = p.network().allow_unnamed();
  if (!n.domains.empty() && n.dns_resolvers.empty())
    return error("network.domains needs network.dns: the resolvers agentcage forwards allowed names to",
                 "add `dns: [system]` (the nameservers of /etc/resolv.conf)");
  for (const auto& u : p.network().unix_sockets()) n.unix_allow.push_back(u);
  return std::optional<NetPolicy>(std::move(n));
}

Result<SeccompPolicy> compile_syscalls(const P& p) {
  SeccompPolicy s;
  s.deny.assign(p.syscalls().deny().begin(), p.syscalls().deny().end());
  s.allow.assign(p.syscalls().allow().begin(), p.syscalls().allow().end());
  // The profile's own action, also in audit mode: there the filter logs instead
  // (compile_seccomp's audit), and attribution judges what this action would have done.
  switch (p.syscalls().action()) {
    case P::SYSCALL_ACTION_KILL: s.action = SeccompAction::kill; break;
    case P::SYSCALL_ACTION_LOG: s.action = SeccompAction::log; break;
    default: s.action = SeccompAction::errno_ret; break;
  }
  if (p.syscalls().has_errno_name()) {
    auto e = errno_from_name(p.syscalls().errno_name());
    if (!e) return error("syscalls.errno_name: unknown errno " + p.syscalls().errno_name());
    s.errno_value = *e;
  }
  if (p.syscalls().has_seccomp_json()) {
    auto text = read_input_file(p.syscalls().seccomp_json(), kMaxSeccompJsonBytes);
    if (!text) return std::unexpected(text.error());
    s.oci_json = *text;
    s.oci_source = p.syscalls().seccomp_json();
  }
  return s;
}

void add_rlimit(std::vector<RlimitSetting>& out, int res, bool has, uint64_t v) {
  if (has) out.push_back(RlimitSetting{res, static_cast<rlim_t>(v), static_cast<rlim_t>(v)});
}

}  // namespace

Result<SandboxPolicy> compile_profile(const v1::Profile& p, const PolicyContext& ctx) {
  SandboxPolicy out;
  out.profile = p.name();
  out.audit_mode = p.mode() == P::MODE_AUDIT;
  auto& c = out.confine;
  c.audit_mode = out.audit_mode;

  // Filesystem: Landlock rights plus the private view; deny paths are masked inside
  // allowed trees; deny_write trees are shown read-only inside writable ones.
  const auto& fs = p.filesystem();
  P::Action fs_action = p.actions().filesystem();
  if (fs_action == P::ACTION_ALLOW) {
    c.fs.restrict = false;
    c.fs.private_view = false;
    out.notes.push_back("actions.filesystem: allow: no filesystem confinement");
  } else {
    c.fs.read.assign(fs.read().begin(), fs.read().end());
    c.fs.write.assign(fs.write().begin(), fs.write().end());
    c.fs.exec.assign(fs.exec().begin(), fs.exec().end());
    c.fs.deny.assign(fs.deny().begin(), fs.deny().end());
    if (fs.has_tmp_size()) c.fs.tmp_size = fs.tmp_size();
    for (const auto& d : fs.deny_write()) c.fs.read.push_back(d);
    // read_only: git rewrites its config by renaming a lock file over it, which the view's
    // read-only bind mount of the file refuses (EBUSY), as it refuses a write.
    // Only trees that are repositories now (write entries include files like /dev/null).
    if (fs.git_config() == P::GIT_CONFIG_READ_ONLY)
      for (const auto& w : fs.write()) {
        struct stat st{};
        if (::lstat((w + "/.git").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        for (const char* f : {"/.git/config", "/.git/config.worktree"}) c.fs.read.push_back(w + f);
      }
    if (fs_action == P::ACTION_KILL) out.notes.push_back("actions.filesystem: kill is enforced as deny (EACCES)");
  }
  // Landlock refuses the exec (EACCES); the sys_exit BPF program kills the caller on the
  // way out of that syscall. Audit mode refuses nothing, so there is nothing to kill.
  out.exec_kill = p.actions().exec() == P::ACTION_KILL && !out.audit_mode;

  // In audit mode too: a variable kept out is not a denial to report but data withheld,
  // and withholding it is what keeps a learning run from leaking the credential.
  out.env = plan_environment(p.environment(), ctx.env, ctx.pass_env);

  if (fs.git_config() == P::GIT_CONFIG_REPORT || fs.git_config() == P::GIT_CONFIG_READ_ONLY)
    out.git_review.assign(fs.write().begin(), fs.write().end());

  auto net = compile_network(p, ctx, out.audit_mode);
  if (!net) return std::unexpected(net.error());
  out.net = std::move(*net);

  auto sc = compile_syscalls(p);
  if (!sc) return std::unexpected(sc.error());
  c.seccomp = std::move(*sc);

  const auto& pr = p.process();
  if (pr.has_max_pids()) c.max_pids = pr.max_pids();
  if (pr.has_memory_max()) c.memory_max = pr.memory_max();
  if (pr.has_cpu_weight()) {
    if (pr.cpu_weight() > 10000)
      return error(fmt::format("process.cpu_weight: {} is outside 1-10000 (100 is every cgroup's default)", pr.cpu_weight()));
    c.cpu_weight = pr.cpu_weight();
  }
  const auto& rl = pr.rlimits();
  add_rlimit(c.rlimits, RLIMIT_NOFILE, rl.has_nofile(), rl.nofile());
  add_rlimit(c.rlimits, RLIMIT_NPROC, rl.has_nproc(), rl.nproc());
  add_rlimit(c.rlimits, RLIMIT_CORE, rl.has_core(), rl.core());
  add_rlimit(c.rlimits, RLIMIT_FSIZE, rl.has_fsize(), rl.fsize());
  add_rlimit(c.rlimits, RLIMIT_AS, rl.has_as(), rl.as());
  add_rlimit(c.rlimits, RLIMIT_CPU, rl.has_cpu(), rl.cpu());
  add_rlimit(c.rlimits, RLIMIT_STACK, rl.has_stack(), rl.stack());
  add_rlimit(c.rlimits, RLIMIT_MEMLOCK, rl.has_memlock(), rl.memlock());
  if (pr.has_user()) {
    passwd* pw = getpwnam(pr.user().c_str());
    if (!pw) return error("process.user: no user " + pr.user());
    c.uid = pw->pw_uid;
    c.gid = pw->pw_gid;
  }
  if (pr.has_group()) {
    group* gr = getgrnam(pr.group().c_str());
    if (!gr) return error("process.group: no group " + pr.group());
    c.gid = gr->gr_gid;
  }
  for (int ns : pr.namespaces()) {
    switch (ns) {
      case P::NAMESPACE_NET: c.namespaces.net = true; break;
      case P::NAMESPACE_IPC: c.namespaces.ipc = true; break;
      case P::NAMESPACE_UTS: c.namespaces.uts = true; break;
      case P::NAMESPACE_MOUNT: break;  // the private view is a mount namespace
      case P::NAMESPACE_PID: c.namespaces.pid = true; break;
      case P::NAMESPACE_USER:
        out.notes.push_back("namespaces: user is not applied (capabilities are dropped instead)");
        break;
      default: break;
    }
  }
  // agentcage's resolver listens on the host's loopback: a sandbox in a network namespace
  // of its own cannot reach it (nor any name's address).
  if (c.namespaces.net && out.net && !out.net->domains.empty())
    return error("network.domains with process.namespaces: [net]: the sandbox has no network to reach the names on",
                 "drop one: net isolates the sandbox from every host, domains allow some by name");
  return out;
}

void limit_to_unprivileged(ConfinePolicy& p, std::vector<std::string>* notes) {
  auto note = [&](const char* s) {
    if (notes) notes->push_back(s);
  };
  if (p.fs.restrict && p.fs.private_view)
    note("unprivileged: no private filesystem view (Landlock alone confines the filesystem; /tmp is the host's)");
  p.fs.private_view = false;
  p.fs.deny.clear();  // without the view there is nothing to mask them with
  if (p.max_pids) note("unprivileged: process.max_pids is not enforced (the pids cgroup needs root)");
  p.max_pids = 0;
  if (p.memory_max)
    note("unprivileged: process.memory_max is RLIMIT_AS per process (the memory cgroup needs root): an allocation past it "
         "fails, nothing is killed or reported");
  if (p.cpu_weight) note("unprivileged: process.cpu_weight is not enforced (the cpu cgroup needs root)");
  p.cpu_weight = 0;
  if (p.namespaces.ipc || p.namespaces.uts)
    note("unprivileged: no ipc/uts namespaces (they need root); SysV IPC and the hostname are the host's");
  p.namespaces.ipc = p.namespaces.uts = false;
  if (p.namespaces.pid)
    note("unprivileged: no pid namespace (it needs root); Landlock scoping keeps the agent's signals inside");
  p.namespaces.pid = false;
  p.uid.reset();
  p.gid.reset();
  p.groups.clear();
  p.unprivileged = true;
}

namespace {

// Which of `paths` (uid, gid, groups) can reach on the host, asked of the kernel by a
// child that takes those ids: access(F_OK) needs search permission on every ancestor,
// ACLs included. A path that does not exist counts as reachable (the view skips it).
// Forked from a threaded daemon: the child makes raw system calls on prepared data only.
Result<std::vector<bool>> reachable_as(uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                                      const std::vector<std::string>& paths) {
  std::vector<const char*> c;
  for (const auto& p : paths) c.push_back(p.c_str());
  int pp[2];
  if (::pipe2(pp, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd r(pp[0]), w(pp[1]);
  long pid = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid < 0) return sys_error("fork (path check as the caller)");
  if (pid == 0) {
    if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0 || ::syscall(SYS_setresgid, gid, gid, gid) != 0 ||
        ::syscall(SYS_setresuid, uid, uid, uid) != 0)
      ::_exit(1);
    for (const char* path : c) {
      char ok = ::syscall(SYS_faccessat, AT_FDCWD, path, F_OK) == 0 || errno == ENOENT ? '1' : '0';
      if (::write(w.get(), &ok, 1) != 1) ::_exit(1);
    }
    ::_exit(0);
  }
  w.reset();
  std::vector<bool> out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(r.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    for (ssize_t i = 0; i < n; ++i) out.push_back(buf[i] == '1');
  int ws = 0;
  ::waitpid(static_cast<pid_t>(pid), &ws, 0);
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || out.size() != paths.size())
    return error(fmt::format("could not check the profile's paths as uid {}", uid));
  return out;
}

}  // namespace

Status confine_for_caller(ConfinePolicy& p, uid_t uid, gid_t gid, const std::vector<gid_t>& groups,
                          std::vector<std::string>* notes) {
  if (uid == 0) return {};
  if (p.uid || p.gid)
    return error("process.user/group: only root may run a profile as another user",
                 "remove process.user/group from the profile, or run as root");
  p.uid = uid;
  p.gid = gid;
  p.groups = groups;
  for (auto* list : {&p.fs.read, &p.fs.write, &p.fs.exec}) {
    auto ok = reachable_as(uid, gid, groups, *list);
    if (!ok) return std::unexpected(ok.error());
    std::vector<std::string> kept;
    for (size_t i = 0; i < list->size(); ++i) {
      if ((*ok)[i]) kept.push_back((*list)[i]);
      else if (notes)
        notes->push_back(fmt::format("filesystem: {} is out of reach of uid {} on the host: left out of the view",
                                     (*list)[i], uid));
    }
    *list = std::move(kept);
  }
  return {};
}

Status add_allowed_domains(v1::Profile& p, const std::vector<std::string>& specs, const std::string& field) {
  auto* net = p.mutable_network();
  for (const auto& spec : specs) {
    auto d = parse_allow_domain(spec);
    if (!d) return error(field + ": " + d.error().context, d.error().hint);
    for (const auto& have : net->domains())
      if (normalize_dns_name(have.name()) == d->pattern)
        return error(fmt::format("{} {}: profile {} already has an entry for {}", field, escape_text(spec), p.name(),
                                 d->pattern),
                     "change that entry in the profile instead");
    auto* e = net->add_domains();
    e->set_name(d->pattern);
    auto* pr = e->add_ports();
    pr->set_lo(d->ports.front().first);
    pr->set_hi(d->ports.front().second);
    e->set_protocol(P::PROTOCOL_TCP);
    e->set_comment(d->comment);
  }
  if (!specs.empty() && net->dns().empty()) net->add_dns("system");
  return {};
}

NetFlags net_flags(const v1::NetworkOptions& o) {
  return NetFlags{{o.allow().begin(), o.allow().end()},
                  {o.allow_unix().begin(), o.allow_unix().end()},
                  o.default_action(),
                  {o.allow_domain().begin(), o.allow_domain().end()},
                  {o.dns().begin(), o.dns().end()}};
}

v1::NetworkOptions network_options(const NetFlags& f) {
  v1::NetworkOptions o;
  for (const auto& a : f.allow) o.add_allow(a);
  for (const auto& u : f.allow_unix) o.add_allow_unix(u);
  o.set_default_action(f.default_action);
  for (const auto& d : f.allow_domain) o.add_allow_domain(d);
  for (const auto& d : f.dns) o.add_dns(d);
  return o;
}

}  // namespace agentcage::core
