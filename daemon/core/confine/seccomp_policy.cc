// SPDX-License-Identifier: Apache-2.0
#include "core/confine/seccomp_policy.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <linux/netlink.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "core/base/unique_fd.h"
#include "core/policy/profile_seccomp.h"

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

const char* family_name(int f) {
  static const char* kNames[] = {
      "AF_UNSPEC", "AF_UNIX",   "AF_INET",  "AF_AX25",     "AF_IPX",  "AF_APPLETALK", "AF_NETROM", "AF_BRIDGE",
      "AF_ATMPVC", "AF_X25",    "AF_INET6", "AF_ROSE",     "AF_DECnet", "AF_NETBEUI", "AF_SECURITY", "AF_KEY",
      "AF_NETLINK", "AF_PACKET", "AF_ASH",  "AF_ECONET",   "AF_ATMSVC", "AF_RDS",    "AF_SNA",    "AF_IRDA",
      "AF_PPPOX",  "AF_WANPIPE", "AF_LLC",  "AF_IB",       "AF_MPLS", "AF_CAN",      "AF_TIPC",   "AF_BLUETOOTH",
      "AF_IUCV",   "AF_RXRPC",  "AF_ISDN",  "AF_PHONET",   "AF_IEEE802154", "AF_CAIF", "AF_ALG",   "AF_NFC",
      "AF_VSOCK",  "AF_KCM",    "AF_QIPCRTR", "AF_SMC",    "AF_XDP",  "AF_MCTP"};
  return f >= 0 && f < static_cast<int>(std::size(kNames)) ? kNames[f] : nullptr;
}

// Families are denied by enumeration up to this bound (the kernel's AF_MAX is 46 in 6.18;
// the margin covers families added later, which a newer kernel would otherwise let
// through). Beyond it socket(2) fails with EAFNOSUPPORT in the kernel itself.
constexpr int kFamilyBound = 64;

// Socket families with no cgroup hook (AF_VSOCK reaches the hypervisor, AF_ALG, AF_XDP,
// AF_TIPC, AF_BLUETOOTH, AF_PACKET, ...) are refused at socket(2) and socketpair(2): the
// network policy cannot see their traffic, so they must not exist. Netlink keeps
// NETLINK_ROUTE (getaddrinfo, `ip addr` read the interface list through it); the other
// protocols expose host-wide state (sock_diag lists every socket on the host, generic
// netlink's taskstats any process) and are refused. `domain` and `protocol` are ints:
// compare the low 32 bits only, as the kernel reads them (a full 64-bit compare would
// be bypassed by setting the upper half). The protocol test is a full 64-bit !=, so an
// upper-half trick there is denied, not let through.
template <typename DeniedOutright>
Status deny_socket_families(MainFilter& m, const SeccompPolicy& p, DeniedOutright denied_outright) {
  if (contains(p.allow, "socket")) return {};
  for (int nr : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
    if (denied_outright(nr)) continue;
    const char* sys = nr == SCMP_SYS(socket) ? "socket" : "socketpair";
    for (int f = 0; f < kFamilyBound; ++f) {
      // Allowed with some protocol: not denied outright (netlink's protocol rule follows).
      if (seccomp_socket_family_allowed(f, NETLINK_ROUTE)) continue;
      const char* fname = family_name(f);
      std::string rule = fname ? fmt::format("domain == {}", fname) : fmt::format("domain == {}", f);
      int rc = seccomp_rule_add(m.ctx.get(), m.action, nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, static_cast<scmp_datum_t>(f)));
      if (rc < 0) return sys_error(fmt::format("seccomp_rule_add({}, {})", sys, rule), -rc);
      m.denied.push_back({sys, nr, rule, {SeccompArgCond{0, false, 0xffffffffu, static_cast<uint64_t>(f)}}});
    }
    std::string rule = "domain == AF_NETLINK, protocol != NETLINK_ROUTE";
    int rc = seccomp_rule_add(m.ctx.get(), m.action, nr, 2, SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_NETLINK),
                              SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE));
    if (rc < 0) return sys_error(fmt::format("seccomp_rule_add({}, {})", sys, rule), -rc);
    m.denied.push_back({sys, nr, rule,
                        {SeccompArgCond{0, false, 0xffffffffu, AF_NETLINK}, SeccompArgCond{2, true, ~uint64_t{0}, NETLINK_ROUTE}}});
  }
  return {};
}

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
    // The condition itself, so attribution tests it exactly on the call's arguments (audit
    // mode records such calls whatever their arguments).
    SeccompArgCond ac;
    ac.arg = c.arg;
    if (c.op == SCMP_CMP_NE) {
      ac.ne = true;
      ac.value = c.datum_a;
    } else if (c.op == SCMP_CMP_MASKED_EQ) {
      ac.mask = c.datum_a;
      ac.value = c.datum_b;
    } else {
      ac.value = c.datum_a;  // SCMP_CMP_EQ
    }
    m.denied.push_back({name, nr, rule, {ac}});
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
    if (auto st = deny_socket_families(m, p, denied_outright); !st) return std::unexpected(st.error());
  }
  return m;
}

// --- OCI / Docker seccomp JSON ---

// The one OCI parser (policy/profile_seccomp) validates; this only maps its result onto
// libseccomp, so a file `profile lint` accepts is a file `run` compiles, and vice versa.
uint32_t oci_action(const std::string& a, std::optional<uint32_t> errno_ret, uint32_t def_errno) {
  if (a == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (a == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errno_ret.value_or(def_errno));
  if (a == "SCMP_ACT_KILL" || a == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (a == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (a == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (a == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  return SCMP_ACT_ERRNO(ENOSYS);  // SCMP_ACT_TRACE: no tracer attached, as runc does
}

scmp_compare oci_op(const std::string& op) {
  if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  return SCMP_CMP_EQ;  // the parser admits only the seven operators
}

bool native_arch_listed(const std::vector<std::string>& arches) {
  for (const auto& a : arches)
    if (a == "amd64" || a == "x86_64" || a == "SCMP_ARCH_X86_64") return true;
  return false;
}

// Docker's default profile gates entries on capabilities and arches; the agent holds no
// capabilities, so entries that need one never apply.
bool rule_applies(const OciSeccompRule& r) {
  if (!r.include_caps.empty()) return false;
  if (!r.include_arches.empty() && !native_arch_listed(r.include_arches)) return false;
  return !native_arch_listed(r.exclude_arches);
}

Result<ScmpCtx> build_oci(const SeccompPolicy& p, bool audit) {
  auto oci = parse_oci_seccomp_text(p.oci_json, p.oci_source);
  if (!oci) return std::unexpected(oci.error());
  uint32_t def_errno = oci->default_errno_ret.value_or(EPERM);
  uint32_t def = oci_action(oci->default_action, oci->default_errno_ret, def_errno);
  uint32_t def_action = audit && def != SCMP_ACT_ALLOW ? SCMP_ACT_LOG : def;
  auto ctx = new_ctx(def_action);
  if (!ctx) return std::unexpected(ctx.error());
  for (size_t i = 0; i < oci->syscalls.size(); ++i) {
    const auto& r = oci->syscalls[i];
    if (!rule_applies(r)) continue;
    uint32_t act = oci_action(r.action, r.errno_ret, def_errno);
    uint32_t action = audit && act != SCMP_ACT_ALLOW ? SCMP_ACT_LOG : act;
    if (action == def_action) continue;  // libseccomp refuses rules equal to the default
    std::vector<scmp_arg_cmp> cmps;
    for (const auto& a : r.args) cmps.push_back(scmp_arg_cmp{a.index, oci_op(a.op), a.value, a.value_two});
    for (const auto& n : r.names) {  // names libseccomp does not know were set aside by the parser
      int rc = seccomp_rule_add_array(ctx->get(), action, resolve(n), static_cast<unsigned>(cmps.size()), cmps.data());
      if (rc < 0 && rc != -EEXIST)
        return sys_error(fmt::format("{}: syscalls[{}]: seccomp_rule_add({})", p.oci_source, i, n), -rc);
    }
  }
  for (const auto& n : oci->unknown_syscalls) spdlog::debug("{}: {} unknown here, skipped", p.oci_source, n);
  return std::move(*ctx);
}

}  // namespace

bool seccomp_socket_family_allowed(int family, int protocol) {
  return family == AF_UNIX || family == AF_INET || family == AF_INET6 || (family == AF_NETLINK && protocol == NETLINK_ROUTE);
}

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
  // affects the caller's own ASLR/ABI quirks), socket(2) as a whole (its families are
  // filtered by argument: deny_socket_families), and unshare/clone
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
