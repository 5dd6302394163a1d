// SPDX-License-Identifier: Apache-2.0
#include "core/confine/seccomp_policy.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "core/base/unique_fd.h"

namespace agentcage::core {
namespace {

struct CtxDeleter {
  void operator()(void* c) const { seccomp_release(c); }
};
using ScmpCtx = std::unique_ptr<void, CtxDeleter>;

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Resolves a name for the native arch; -1 (__NR_SCMP_ERROR) when libseccomp or the arch
// does not know it.
int resolve(const std::string& name) { return seccomp_syscall_resolve_name(name.c_str()); }

Result<ScmpCtx> new_ctx(uint32_t def) {
  ScmpCtx ctx(seccomp_init(def));
  if (!ctx) return error("seccomp_init", "libseccomp could not allocate a filter");
  // Any other ABI (i386 via int 0x80, x32) is killed: the deny set is written for the
  // native syscall table only, so a foreign ABI would be a way around it.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return sys_error("seccomp_attr_set(ACT_BADARCH)", -rc);
  // We export the program and install it ourselves after PR_SET_NO_NEW_PRIVS.
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  // A binary tree over syscall numbers instead of a linear list: O(log n) per syscall for
  // the numbers the kernel's allow-bitmap cache cannot short-circuit. Best effort (2.5+).
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  return ctx;
}

Result<std::vector<sock_filter>> export_bpf(void* ctx, const char* what) {
  UniqueFd mfd(::memfd_create("agentcage-seccomp", MFD_CLOEXEC));
  if (!mfd) return sys_error("memfd_create");
  int rc = seccomp_export_bpf(ctx, mfd.get());
  if (rc < 0) return sys_error(fmt::format("seccomp_export_bpf({})", what), -rc);
  off_t size = ::lseek(mfd.get(), 0, SEEK_END);
  if (size < 0 || size % sizeof(sock_filter) != 0) return error(fmt::format("seccomp_export_bpf({}): bad size {}", what, size));
  std::vector<sock_filter> insns(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(mfd.get(), insns.data(), static_cast<size_t>(size), 0) != size) return sys_error("pread(seccomp memfd)");
  return insns;
}

Result<std::string> export_pfc(void* ctx) {
  UniqueFd mfd(::memfd_create("agentcage-pfc", MFD_CLOEXEC));
  if (!mfd) return sys_error("memfd_create");
  int rc = seccomp_export_pfc(ctx, mfd.get());
  if (rc < 0) return sys_error("seccomp_export_pfc", -rc);
  off_t size = ::lseek(mfd.get(), 0, SEEK_END);
  std::string s(static_cast<size_t>(size), '\0');
  if (::pread(mfd.get(), s.data(), s.size(), 0) != size) return sys_error("pread(pfc memfd)");
  return s;
}

struct MainFilter {
  ScmpCtx ctx;
  std::vector<SeccompDenied> denied;
  uint32_t action = 0;
};

Result<MainFilter> build_main(const SeccompPolicy& p, bool audit) {
  MainFilter m;
  auto ctx = new_ctx(SCMP_ACT_ALLOW);
  if (!ctx) return std::unexpected(ctx.error());
  m.ctx = std::move(*ctx);
  if (p.action == SeccompAction::errno_ret && (p.errno_value <= 0 || p.errno_value > 4095))
    return error(fmt::format("syscalls.errno: {} is not an errno value (1..4095)", p.errno_value));
  m.action = audit ? SCMP_ACT_LOG
             : p.action == SeccompAction::kill ? SCMP_ACT_KILL_PROCESS
             : p.action == SeccompAction::log  ? SCMP_ACT_LOG
                                               : SCMP_ACT_ERRNO(static_cast<uint32_t>(p.errno_value));
  for (const auto& n : p.allow)
    if (resolve(n) == __NR_SCMP_ERROR) return error(fmt::format("syscalls.allow: unknown system call \"{}\"", n));

  auto add = [&](const std::string& name, const std::string& origin) -> Status {
    int nr = resolve(name);
    if (nr == __NR_SCMP_ERROR) {
      if (origin == "builtin") {
        spdlog::debug("seccomp: {} unknown to this libseccomp, not in the filter", name);
        return {};
      }
      return error(fmt::format("syscalls.deny: unknown system call \"{}\"", name));
    }
    for (const auto& d : m.denied)
      if (d.nr == nr && d.rule == origin) return {};
    int rc = seccomp_rule_add(m.ctx.get(), m.action, nr, 0);
    if (rc < 0 && rc != -EEXIST) return sys_error(fmt::format("seccomp_rule_add({})", name), -rc);
    m.denied.push_back({name, nr, origin});
    return {};
  };
  if (p.builtin)
    for (const auto& n : seccomp_builtin_deny())
      if (!contains(p.allow, n))
        if (auto st = add(n, "builtin"); !st) return std::unexpected(st.error());
  for (const auto& n : p.deny)
    if (auto st = add(n, "profile"); !st) return std::unexpected(st.error());

  // An unconditional deny already covers every argument: a conditional rule on top would
  // be refused by libseccomp (conflicting actions) and adds nothing.
  auto denied_outright = [&](int nr) {
    return std::any_of(m.denied.begin(), m.denied.end(),
                       [&](const SeccompDenied& d) { return d.nr == nr && (d.rule == "builtin" || d.rule == "profile"); });
  };
  auto cond = [&](const char* name, int nr, const std::string& rule, scmp_arg_cmp c) -> Status {
    if (denied_outright(nr)) return {};
    int rc = seccomp_rule_add(m.ctx.get(), m.action, nr, 1, c);
    if (rc < 0) return sys_error(fmt::format("seccomp_rule_add({}, {})", name, rule), -rc);
    m.denied.push_back({name, nr, rule});
    return {};
  };
  if (p.builtin) {
    // ioctl's cmd is an unsigned int: the kernel ignores the upper 32 bits of the register,
    // so compare only the low word (a full 64-bit compare is bypassed with cmd | 1<<32).
    for (auto [cmd, nm] : {std::pair{TIOCSTI, "cmd == TIOCSTI"}, std::pair{TIOCLINUX, "cmd == TIOCLINUX"}})
      if (!contains(p.allow, "ioctl"))
        if (auto st = cond("ioctl", SCMP_SYS(ioctl), nm, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, static_cast<scmp_datum_t>(cmd))); !st)
          return std::unexpected(st.error());
    // Syscalls that act on another process by pid, which a root agent may do to any root
    // process on the host (same uid: no capability needed, and Landlock has no hook for
    // them): change its rlimits, priority, scheduling, CPU set, I/O priority or memory
    // placement. Allowed on itself (pid 0); denied for any other target. Rules are ORed.
    struct Foreign {
      const char* name;
      unsigned arg;
      uint64_t ok;      // the only allowed value of that argument
      const char* rule;
    };
    static constexpr Foreign kForeign[] = {
        {"prlimit64", 0, 0, "pid != 0"},
        {"setpriority", 0, 0, "which != PRIO_PROCESS"},
        {"setpriority", 1, 0, "who != 0"},
        {"sched_setaffinity", 0, 0, "pid != 0"},
        {"sched_setscheduler", 0, 0, "pid != 0"},
        {"sched_setparam", 0, 0, "pid != 0"},
        {"sched_setattr", 0, 0, "pid != 0"},
        {"ioprio_set", 0, 1, "which != IOPRIO_WHO_PROCESS"},
        {"ioprio_set", 1, 0, "who != 0"},
        {"migrate_pages", 0, 0, "pid != 0"},
        {"move_pages", 0, 0, "pid != 0"},
    };
    for (const auto& f : kForeign) {
      if (contains(p.allow, f.name)) continue;
      int nr = resolve(f.name);
      if (nr == __NR_SCMP_ERROR) continue;
      if (auto st = cond(f.name, nr, f.rule, scmp_arg_cmp{f.arg, SCMP_CMP_NE, f.ok, 0}); !st)
        return std::unexpected(st.error());
    }
    // New user namespaces hand the agent a full capability set over a fresh namespace:
    // the root of most kernel privilege escalations. Other CLONE_NEW* need CAP_SYS_ADMIN,
    // which the agent no longer has.
    if (!contains(p.allow, "unshare")) {
      if (auto st = cond("unshare", SCMP_SYS(unshare), "flags & CLONE_NEWUSER", SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)); !st)
        return std::unexpected(st.error());
      if (auto st = cond("clone", SCMP_SYS(clone), "flags & CLONE_NEWUSER", SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)); !st)
        return std::unexpected(st.error());
      // clone3 passes its flags in memory, which seccomp cannot read. ENOSYS makes libc
      // fall back to clone(2), where the flags are filterable (what Docker does too).
      int rc = seccomp_rule_add(m.ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
      if (rc < 0 && rc != -EEXIST) return sys_error("seccomp_rule_add(clone3)", -rc);
    }
  }
  return m;
}

// --- OCI / Docker seccomp JSON ---

std::string oci_where(const std::string& source, std::string_view json, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < json.size(); ++i) {
    if (json[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("{}:{}:{}", source, line, col);
}

Result<uint32_t> oci_action(const std::string& a, const nlohmann::json& errno_ret, int def_errno, const std::string& field) {
  int e = def_errno;
  if (!errno_ret.is_null()) {
    if (!errno_ret.is_number_integer() || errno_ret.get<int64_t>() < 0 || errno_ret.get<int64_t>() > 4095)
      return error(field + ".errnoRet: must be an integer 0..4095");
    e = errno_ret.get<int>();
  }
  if (a == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (a == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(static_cast<uint32_t>(e));
  if (a == "SCMP_ACT_KILL" || a == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (a == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (a == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (a == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (a == "SCMP_ACT_TRACE") return SCMP_ACT_ERRNO(ENOSYS);  // no tracer: as runc does
  return error(fmt::format("{}: unsupported action \"{}\"", field, a),
               "use SCMP_ACT_ALLOW, _ERRNO, _KILL, _KILL_PROCESS, _TRAP, _LOG or _TRACE");
}

Result<scmp_compare> oci_op(const std::string& op, const std::string& field) {
  if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (op == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
  if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  return error(fmt::format("{}: unknown operator \"{}\"", field, op));
}

bool native_arch_listed(const nlohmann::json& arches) {
  for (const auto& a : arches)
    if (a.is_string() && (a == "amd64" || a == "x86_64" || a == "SCMP_ARCH_X86_64")) return true;
  return false;
}

Result<ScmpCtx> build_oci(const SeccompPolicy& p, bool audit) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(p.oci_json);
  } catch (const json::parse_error& e) {
    return error(fmt::format("{}: invalid JSON: {}", oci_where(p.oci_source, p.oci_json, e.byte), e.what()));
  }
  const std::string& src = p.oci_source;
  if (!j.is_object()) return error(src + ": top level must be an object");
  try {
    int def_errno = EPERM;
    if (j.contains("defaultErrnoRet")) {
      if (!j["defaultErrnoRet"].is_number_integer()) return error(src + ": defaultErrnoRet: must be an integer");
      def_errno = j["defaultErrnoRet"].get<int>();
    }
    if (!j.contains("defaultAction") || !j["defaultAction"].is_string())
      return error(src + ": defaultAction: required string");
    auto def = oci_action(j["defaultAction"].get<std::string>(), json(def_errno), def_errno, src + ": defaultAction");
    if (!def) return std::unexpected(def.error());
    uint32_t def_action = audit && *def != SCMP_ACT_ALLOW ? SCMP_ACT_LOG : *def;
    auto ctx = new_ctx(def_action);
    if (!ctx) return std::unexpected(ctx.error());
    if (j.contains("syscalls") && !j["syscalls"].is_array()) return error(src + ": syscalls: must be an array");
    const json empty = json::array();
    const json& calls = j.contains("syscalls") ? j["syscalls"] : empty;
    for (size_t i = 0; i < calls.size(); ++i) {
      const json& s = calls[i];
      std::string field = fmt::format("{}: syscalls[{}]", src, i);
      if (!s.is_object()) return error(field + ": must be an object");
      // Docker's default profile gates entries on capabilities and arches; the agent holds
      // no capabilities, so entries that need one never apply.
      if (s.contains("includes")) {
        const json& inc = s["includes"];
        if (inc.contains("caps") && inc["caps"].is_array() && !inc["caps"].empty()) continue;
        if (inc.contains("arches") && inc["arches"].is_array() && !inc["arches"].empty() && !native_arch_listed(inc["arches"])) continue;
      }
      if (s.contains("excludes")) {
        const json& exc = s["excludes"];
        if (exc.contains("arches") && exc["arches"].is_array() && native_arch_listed(exc["arches"])) continue;
      }
      std::vector<std::string> names;
      if (s.contains("names")) {
        if (!s["names"].is_array()) return error(field + ".names: must be an array of strings");
        for (const auto& n : s["names"]) {
          if (!n.is_string()) return error(field + ".names: must be an array of strings");
          names.push_back(n.get<std::string>());
        }
      }
      if (s.contains("name")) {
        if (!s["name"].is_string()) return error(field + ".name: must be a string");
        names.push_back(s["name"].get<std::string>());
      }
      if (!s.contains("action") || !s["action"].is_string()) return error(field + ".action: required string");
      auto act = oci_action(s["action"].get<std::string>(), s.contains("errnoRet") ? s["errnoRet"] : json(), def_errno, field + ".action");
      if (!act) return std::unexpected(act.error());
      uint32_t action = audit && *act != SCMP_ACT_ALLOW ? SCMP_ACT_LOG : *act;
      std::vector<scmp_arg_cmp> cmps;
      if (s.contains("args") && !s["args"].is_null()) {
        if (!s["args"].is_array()) return error(field + ".args: must be an array");
        for (size_t k = 0; k < s["args"].size(); ++k) {
          const json& a = s["args"][k];
          std::string af = fmt::format("{}.args[{}]", field, k);
          if (!a.is_object() || !a.contains("index") || !a["index"].is_number_unsigned() || a["index"].get<unsigned>() > 5)
            return error(af + ".index: required, 0..5");
          if (!a.contains("value") || !a["value"].is_number_unsigned()) return error(af + ".value: required unsigned integer");
          if (!a.contains("op") || !a["op"].is_string()) return error(af + ".op: required string");
          auto op = oci_op(a["op"].get<std::string>(), af + ".op");
          if (!op) return std::unexpected(op.error());
          uint64_t v2 = a.contains("valueTwo") && a["valueTwo"].is_number_unsigned() ? a["valueTwo"].get<uint64_t>() : 0;
          cmps.push_back(scmp_arg_cmp{a["index"].get<unsigned>(), *op, a["value"].get<uint64_t>(), v2});
        }
      }
      if (action == def_action) continue;  // libseccomp refuses rules equal to the default
      for (const auto& n : names) {
        int nr = resolve(n);
        if (nr == __NR_SCMP_ERROR) {
          // Profiles list syscalls of newer kernels and other arches; runc skips them too.
          spdlog::debug("{}: {} unknown here, skipped", field, n);
          continue;
        }
        int rc = seccomp_rule_add_array(ctx->get(), action, nr, static_cast<unsigned>(cmps.size()), cmps.data());
        if (rc < 0 && rc != -EEXIST) return sys_error(fmt::format("{}: seccomp_rule_add({})", field, n), -rc);
      }
    }
    return std::move(*ctx);
  } catch (const json::exception& e) {
    return error(fmt::format("{}: {}", src, e.what()));
  }
}

}  // namespace

const std::vector<std::string>& seccomp_builtin_deny() {
  static const std::vector<std::string> kDeny = {
      // async I/O that bypasses per-syscall filtering and has a long CVE history
      "io_uring_setup", "io_uring_enter", "io_uring_register",
      // reading or writing other processes
      "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp",
      // kernel attack surface and observability of everything
      "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie", "fanotify_init",
      // modules and kexec
      "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
      // the mount family: the masks over denied paths must stay in place
      "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
      "fsconfig", "fspick", "mount_setattr", "setns",
      // keyrings are not namespaced
      "keyctl", "add_key", "request_key",
      // path-less file access that skips every path-based check (Landlock, masks)
      "open_by_handle_at", "name_to_handle_at",
      // host-wide state
      "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime",
      "adjtimex", "syslog", "quotactl", "quotactl_fd", "vhangup", "iopl", "ioperm", "uselib",
      "nfsservctl",
  };
  // Deliberately not here: personality (setarch and some runtimes call it; it only
  // affects the caller's own ASLR/ABI quirks), socket(AF_NETLINK) (unprivileged netlink
  // only reads; changes need CAP_NET_ADMIN, which the agent never has), and unshare/clone
  // in general (only their CLONE_NEWUSER forms, below: other namespaces need capabilities).
  return kDeny;
}

Result<CompiledSeccomp> compile_seccomp(const SeccompPolicy& p, bool audit) {
  CompiledSeccomp out;
  auto m = build_main(p, audit);
  if (!m) return std::unexpected(m.error());
  auto bpf = export_bpf(m->ctx.get(), "builtin");
  if (!bpf) return std::unexpected(bpf.error());
  out.programs.push_back({"builtin", std::move(*bpf)});

  out.denied = std::move(m->denied);
  out.deny_action = m->action;
  out.log = m->action == SCMP_ACT_LOG;
  if (!p.oci_json.empty()) {
    auto o = build_oci(p, audit);
    if (!o) return std::unexpected(o.error());
    auto obpf = export_bpf(o->get(), "oci");
    if (!obpf) return std::unexpected(obpf.error());
    out.programs.push_back({"oci", std::move(*obpf)});
  }
  return out;
}

Result<std::string> seccomp_pfc(const SeccompPolicy& p, bool audit) {
  auto m = build_main(p, audit);
  if (!m) return std::unexpected(m.error());
  auto s = export_pfc(m->ctx.get());
  if (!s) return s;

  if (!p.oci_json.empty()) {
    auto o = build_oci(p, audit);
    if (!o) return std::unexpected(o.error());
    auto os = export_pfc(o->get());
    if (!os) return os;
    *s += "#\n# --- oci ---\n" + *os;
  }
  return s;
}

int seccomp_install(const SeccompProgram& prog, bool log) {
  struct sock_fprog fp{static_cast<unsigned short>(prog.insns.size()), const_cast<sock_filter*>(prog.insns.data())};
  unsigned flags = log ? SECCOMP_FILTER_FLAG_LOG : 0;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fp) != 0) return errno;
  return 0;
}

}  // namespace agentcage::core
