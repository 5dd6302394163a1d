// SPDX-License-Identifier: Apache-2.0
#include "core/events/attribution.h"

#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include <fmt/format.h>

namespace agentcage::core {
namespace {

int errno_of(const std::string& name) {
  if (name == "EACCES") return EACCES;
  if (name == "EPERM") return EPERM;
  if (name == "EROFS") return EROFS;
  if (name == "ENOENT") return ENOENT;  // a path the private view leaves out
  if (name == "EAGAIN") return EAGAIN;  // a fork at the pids limit
  return 0;
}

bool is_net_syscall(const std::string& name) {
  return name == "connect" || name == "sendto" || name == "sendmsg" || name == "sendmmsg" || name == "bind" ||
         name == "socket";
}

// Syscalls the monitor reports as file or exec events: their failures are attributed
// there, with the path, so the matching failed-syscall event must not count twice.
bool is_file_syscall(const std::string& name) {
  static const char* kFile[] = {"execve",    "execveat",  "open",      "openat",    "openat2",  "creat",    "unlink",   "unlinkat",
                                "rmdir",     "rename",    "renameat", "renameat2", "mkdir",   "mkdirat",
                                "link",      "linkat",    "symlink",  "symlinkat", "chmod",   "fchmod",
                                "fchmodat",  "fchmodat2", "chown",    "fchown",   "lchown",   "fchownat",
                                "truncate",  "ftruncate", "setxattr", "lsetxattr", "fsetxattr"};
  for (const char* f : kFile)
    if (name == f) return true;
  return false;
}

v1::Event violation_from(const v1::Event& ev, const Violation& v, const std::string& what) {
  v1::Event out;
  out.set_node(ev.node());
  out.set_time_ns(ev.time_ns());
  out.set_ktime_ns(ev.ktime_ns());
  out.set_sandbox_id(ev.sandbox_id());
  *out.mutable_process() = ev.process();
  auto* vi = out.mutable_violation();
  vi->set_mechanism(mechanism_name(v.mechanism));
  vi->set_rule(v.rule);
  vi->set_what(what);
  return out;
}

// Where the process's absolute paths start: its root while it lives (a sandbox's view),
// else the host's ("").
std::string process_root(const v1::Event& ev) {
  uint32_t pid = ev.process().pid();
  if (!pid) return {};
  std::string r = fmt::format("/proc/{}/root", pid);
  return ::access(r.c_str(), X_OK) == 0 ? r : std::string();
}

std::string read_link(const std::string& link) {
  char buf[4096];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
  return n > 0 && static_cast<size_t>(n) < sizeof buf ? std::string(buf, n) : std::string();
}

}  // namespace

std::string physical_path(const std::string& path, const std::string& root) {
  if (path.empty() || path[0] != '/') return {};
  // Bounds: the kernel's own (40 links, PATH_MAX), so an agent's loop of links costs
  // the reader no more than it cost the kernel.
  constexpr int kMaxLinks = 40;
  constexpr size_t kMaxPath = 4096;
  std::vector<std::string> todo;  // components left, last first
  auto push = [&todo](const std::string& p) {
    std::vector<std::string> parts;
    size_t i = 0;
    while (i <= p.size()) {
      size_t j = p.find('/', i);
      if (j == std::string::npos) j = p.size();
      if (j > i) parts.push_back(p.substr(i, j - i));
      i = j + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push(path);
  std::string out;  // "" is the root
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.back());
    todo.pop_back();
    if (c == ".") continue;
    if (c == "..") {
      out.resize(out.rfind('/') == std::string::npos ? 0 : out.rfind('/'));
      continue;
    }
    std::string next = out + "/" + c;
    if (next.size() > kMaxPath) return {};
    struct stat st;
    if (::lstat((root + next).c_str(), &st) != 0) {
      // Missing from here on: the rest is taken as spelt (what the kernel was asked).
      out = next;
      while (!todo.empty()) {
        if (todo.back() != ".") out += "/" + todo.back();
        todo.pop_back();
      }
      out = std::filesystem::path(out).lexically_normal().string();
      break;
    }
    if (!S_ISLNK(st.st_mode)) {
      out = std::move(next);
      continue;
    }
    if (++links > kMaxLinks) return {};  // ELOOP: the kernel refused it for that
    char buf[4096];
    ssize_t n = ::readlink((root + next).c_str(), buf, sizeof buf);
    if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) return {};
    std::string target(buf, static_cast<size_t>(n));
    if (target[0] == '/') out.clear();  // absolute: from the process's root
    push(target);
  }
  if (out.empty()) out.push_back('/');  // (not = "/": a GCC 12 -Wrestrict false positive)
  return out == path ? std::string() : out;
}

std::string attribution_path(const v1::Event& ev, const std::string& given, int dirfd, const std::string& cwd) {
  namespace fs = std::filesystem;
  if (given.empty()) return given;
  if (given[0] == '/') return fs::path(given).lexically_normal().string();
  // Relative: to the cwd the kernel gave with the record, else to the process's /proc
  // links, while it lives (the pipeline runs a few ms behind), which are what the kernel
  // resolved against. Never to an older recorded cwd: a `cd` since would name another file.
  std::string base = dirfd == AT_FDCWD ? cwd : std::string();
  if (base.empty())
    if (uint32_t pid = ev.process().pid())
      base = read_link(dirfd == AT_FDCWD ? fmt::format("/proc/{}/cwd", pid) : fmt::format("/proc/{}/fd/{}", pid, dirfd));
  if (base.empty() || base[0] != '/') return given;
  return (fs::path(base) / given).lexically_normal().string();
}

std::string mechanism_name(const std::string& m) {
  if (m == "mount_mask" || m == "mount_view") return "mount-mask";
  return m;
}

namespace {

// mode: audit refuses nothing, so nothing fails: each action that succeeded is judged
// against the same compiled profile as if it were enforced (its Landlock plan, its masks
// and view), and what enforcing would have refused is reported as "audit: would deny".
ConfineDecisions as_enforced(const ConfineDecisions& d) {
  ConfineDecisions enforced = d;
  enforced.policy.audit_mode = false;
  enforced.landlock_enforced = d.landlock.handled_fs != 0;
  enforced.masks_enforced = !d.masks.entries.empty() || d.masks.private_view;
  return enforced;
}

std::optional<v1::Event> would_deny(const v1::Event& ev, const ConfineDecisions& d) {
  const ConfineDecisions enforced = as_enforced(d);
  auto judge = [&](long nr, const std::string& path, int open_flags) -> std::optional<Violation> {
    if (path.empty() || path[0] != '/') return std::nullopt;
    // Enforcing lets the view's own root be listed (READ_DIR on its tmpfs, added in the child).
    if (path == "/" && d.masks.private_view) return std::nullopt;
    FailedOp op;
    op.nr = nr;
    op.err = EACCES;
    op.path = path;
    op.open_flags = open_flags;
    op.judge_success = true;
    return attribute(enforced, op);
  };
  auto report = [&](const Violation& v, const std::string& what) {
    auto out = violation_from(ev, v, "audit: would deny " + what);
    out.mutable_violation()->set_action("audit");
    return out;
  };
  if (ev.has_file()) {
    const auto& f = ev.file();
    const std::string path = f.path_resolved() ? f.path() : attribution_path(ev, f.path(), f.dirfd(), "");
    const bool opens = f.op() == "open" || f.op() == "creat";
    // O_CREAT on a file that was there (`> /dev/null`) creates nothing, and Landlock asks
    // for make_reg only when it does; the record does not say which, so only O_EXCL (it
    // did create) is judged as a creation. A new file in a tree without write is still
    // reported: it needs write_file there too.
    int flags = opens ? static_cast<int>(f.flags()) : -1;
    if (opens && (flags & O_CREAT) && !(flags & O_EXCL)) flags &= ~O_CREAT;
    // O_PATH opens no file (Landlock does not check it): find/fts use it to walk trees.
    if (opens && (flags & O_PATH)) return std::nullopt;
    auto v = judge(seccomp_syscall_resolve_name(f.syscall().c_str()), path, flags);
    if (!v) return std::nullopt;
    auto out = report(*v, path == f.path() ? fmt::format("{} {}", f.op(), f.path())
                                           : fmt::format("{} {} ({})", f.op(), f.path(), path));
    *out.mutable_violation()->mutable_file() = f;
    return out;
  }
  // An exec: the file named (a script) and the image mapped (its interpreter, or itself)
  // each need execute.
  const auto& x = ev.exec();
  const std::string named = attribution_path(ev, x.filename(), AT_FDCWD, ev.process().cwd());
  for (const std::string& image : {named, ev.process().binary()}) {
    auto v = judge(SYS_execve, image, -1);
    if (!v) continue;
    return report(*v, image == x.filename() ? fmt::format("exec {}", x.filename())
                                            : fmt::format("exec {} ({})", x.filename(), image));
  }
  return std::nullopt;
}

// A syscall in the audit set that was not refused (the sys_exit program records those
// whatever their result): what the enforced seccomp filter would have answered.
std::optional<v1::Event> would_deny_syscall(const v1::Event& ev, const ConfineDecisions& d) {
  ConfineDecisions enforced = as_enforced(d);
  auto& sc = enforced.policy.seccomp;
  if (sc.action == SeccompAction::log) return std::nullopt;  // enforcing only logs too
  const bool kill = sc.action == SeccompAction::kill;
  sc.action = SeccompAction::errno_ret;
  const auto& s = ev.syscall();
  FailedOp op;
  op.nr = s.nr();
  op.err = sc.errno_value;
  op.has_args = s.args_size() > 0;
  for (int i = 0; i < s.args_size() && i < 6; ++i) op.args[i] = s.args(i);
  auto v = attribute(enforced, op);
  if (!v) return std::nullopt;
  if (kill) v->rule += "; syscalls.action: kill (the process would be killed)";
  auto out = violation_from(ev, *v, "audit: would deny syscall " + s.name());
  out.mutable_violation()->set_action("audit");
  *out.mutable_violation()->mutable_syscall() = s;
  return out;
}

}  // namespace

std::optional<v1::Event> attribute_event(const v1::Event& ev, const ConfineDecisions& d, bool net_reported) {
  if (d.policy.audit_mode) {
    if ((ev.has_file() && ev.file().result() >= 0) || (ev.has_exec() && ev.exec().result() == 0))
      return would_deny(ev, d);
    // A syscall the enforced filter would refuse (a kill rule's too, which a refusal for
    // another reason would not show); the audit set's records have any result.
    if (ev.has_syscall())
      if (auto v = would_deny_syscall(ev, d)) return v;
    // A failure (permission bits, a missing capability) is judged as enforcing would have
    // judged it: the profile's refusal is what the run learns, whatever refused it here.
    if (ev.has_file() || ev.has_exec() || ev.has_syscall()) {
      auto v = attribute_event(ev, as_enforced(d), net_reported);
      // Limits hold in audit mode too: what they refused was refused.
      if (v && v->violation().mechanism() != "pids-limit") {
        v->mutable_violation()->set_action("audit");
        v->mutable_violation()->set_what("audit: would deny " + v->violation().what());
      }
      return v;
    }
  }
  if (ev.has_file()) {
    const auto& f = ev.file();
    int err = errno_of(f.error());
    if (f.result() >= 0 || !err) return std::nullopt;
    // "../", "./" and relative spellings are judged by where they lead, not as written;
    // so are symlinks on the way (a chain of links to a denied file, `link/..`), followed
    // in the process's root while it lives (else the host's: the view binds its trees at
    // the same paths), as the kernel followed them.
    const std::string path = attribution_path(ev, f.path(), f.dirfd(), "");
    // From the spelling itself when absolute: "link/.." is the link's parent, not ".".
    const std::string phys = physical_path(!f.path().empty() && f.path()[0] == '/' ? f.path() : path, process_root(ev));
    const std::string& shown = phys.empty() ? path : phys;
    // A folded record stands for more attempts than itself (FileOp.repeats): say so.
    const std::string what = (shown == f.path() ? fmt::format("{} {}", f.op(), f.path())
                                                : fmt::format("{} {} ({})", f.op(), f.path(), shown)) +
                             (f.repeats() ? fmt::format(", and {} more identical attempts", f.repeats()) : "");
    // Missing in the view is a denial only when the host has it: the view hid it. (A
    // path missing on the host too is a plain ENOENT, reported by nothing.)
    struct stat st;
    if (err == ENOENT && (shown.empty() || shown[0] != '/' || ::lstat(shown.c_str(), &st) != 0))
      return std::nullopt;
    if (err == EROFS) {
      // The private view shows read and exec trees read-only: a write there fails with
      // EROFS before Landlock is asked.
      if (!d.masks_enforced || !d.masks.private_view) return std::nullopt;
      auto out = violation_from(ev, Violation{"mount_view", "filesystem: read-only here (not in filesystem.write)"}, what);
      out.mutable_violation()->set_action("deny");
      *out.mutable_violation()->mutable_file() = f;
      return out;
    }
    FailedOp op;
    op.err = err;
    op.path = path;
    op.nr = seccomp_syscall_resolve_name(f.syscall().c_str());
    if (f.op() == "open" || f.op() == "creat") op.open_flags = static_cast<int>(f.flags());
    auto v = attribute(d, op);
    if (!v && !phys.empty()) {
      op.path = phys;
      v = attribute(d, op);
    }
    if (!v) return std::nullopt;
    auto out = violation_from(ev, *v, what);
    out.mutable_violation()->set_action(d.policy.audit_mode ? "audit" : "deny");
    *out.mutable_violation()->mutable_file() = f;
    return out;
  }
  if (ev.has_exec() && ev.exec().result() < 0) {
    // A refused execve/execveat (Landlock EXECUTE outside filesystem.exec, an image the
    // view leaves out, seccomp): the caller keeps running its old image, so nothing else
    // would ever say it tried. Named by the image it tried, resolved like a file path.
    const auto& x = ev.exec();
    int err = errno_of(x.error());
    if (!err) return std::nullopt;
    // The decoder put the kernel's cwd of that moment into process.cwd for a relative
    // filename. (execveat's dirfd is not recorded: such a name is taken as cwd-relative.)
    const std::string path = attribution_path(ev, x.filename(), AT_FDCWD, ev.process().cwd());
    // Unresolved (relative, no cwd): no rule can be judged against it.
    const bool resolved = !path.empty() && path[0] == '/';
    if (!resolved && !x.killed()) return std::nullopt;
    struct stat st;
    if (err == ENOENT && ::lstat(path.c_str(), &st) != 0) return std::nullopt;
    FailedOp op;
    op.nr = SYS_execve;
    op.err = err;
    op.path = path;
    std::optional<Violation> v;
    if (resolved) v = attribute(d, op);
    // The kernel killed the caller (actions.exec: kill): a violation whatever refused the
    // exec, since the kill happened.
    if (!v && x.killed()) v = Violation{"landlock", "actions.exec: kill (exec refused with EACCES)"};
    if (!v) return std::nullopt;
    const std::string image = path == x.filename() || !resolved ? fmt::format("exec {}", x.filename())
                                                   : fmt::format("exec {} ({})", x.filename(), path);
    if (x.killed()) {
      // The kill is the sys_exit BPF program's; the refusal the mechanism's.
      auto out = violation_from(ev, *v, image + ": killed by agentcage's sys_exit BPF program (actions.exec: kill)");
      out.mutable_violation()->set_action("kill");
      return out;
    }
    auto out = violation_from(ev, *v, image);
    out.mutable_violation()->set_action(d.policy.audit_mode ? "audit" : "deny");
    return out;
  }
  if (ev.has_syscall()) {
    const auto& s = ev.syscall();
    int err = errno_of(s.error());
    // The cgroup hooks report inet sockets themselves; other families (refused by
    // seccomp) have no hook, so their failure is attributed here.
    bool hooked = is_net_syscall(s.name()) &&
                  (s.name() != "socket" || (s.args_size() > 0 && ((s.args(0) & 0xffffffffu) == AF_INET ||
                                                                  (s.args(0) & 0xffffffffu) == AF_INET6)));
    if (!err || is_file_syscall(s.name()) || (net_reported && hooked)) return std::nullopt;
    FailedOp op;
    op.nr = s.nr();
    op.err = err;
    op.has_args = s.args_size() > 0;
    for (int i = 0; i < s.args_size() && i < 6; ++i) op.args[i] = s.args(i);
    auto v = attribute(d, op);
    if (!v) return std::nullopt;
    auto out = violation_from(ev, *v, v->mechanism == "pids-limit" ? s.name() + ": the sandbox is at its process limit"
                                                                    : "syscall " + s.name());
    // Limits hold in audit mode too: what they refused was refused.
    out.mutable_violation()->set_action(d.policy.audit_mode && v->mechanism != "pids-limit" ? "audit" : "deny");
    *out.mutable_violation()->mutable_syscall() = s;
    return out;
  }
  if (ev.has_exit() && ev.exit().signal()) {
    auto v = attribute_exit(d, ev.exit().signal(), ev.exit().oom_killed());
    if (!v) return std::nullopt;
    auto out = violation_from(ev, *v,
                              ev.exit().oom_killed()
                                  ? "killed by the OOM killer: the sandbox reached its memory limit"
                                  : fmt::format("killed by signal {} ({})", ev.exit().signal(), strsignal(ev.exit().signal())));
    out.mutable_violation()->set_action("kill");
    return out;
  }
  return std::nullopt;
}

}  // namespace agentcage::core
