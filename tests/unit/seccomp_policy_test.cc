// SPDX-License-Identifier: Apache-2.0
// The profile -> seccomp compilation, checked without loading anything: the exported BPF
// programs are run through a small classic-BPF interpreter on synthetic seccomp_data, so
// each test asks the question the kernel will ask ("what happens to ioctl(fd, TIOCSTI)?").
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/confine/seccomp_policy.h"
#include "core/policy/profile_seccomp.h"

namespace agentcage::core {
namespace {

struct Call {
  int nr;
  uint32_t arch = AUDIT_ARCH_X86_64;
  uint64_t args[6] = {};
};

// Classic BPF as the seccomp verifier admits it (seccomp_check_filter): loads from
// seccomp_data, ALU, jumps, scratch memory, returns.
uint32_t run_bpf(const std::vector<sock_filter>& prog, const Call& c) {
  struct seccomp_data d{};
  d.nr = c.nr;
  d.arch = c.arch;
  std::memcpy(d.args, c.args, sizeof d.args);
  const auto* bytes = reinterpret_cast<const uint8_t*>(&d);
  uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {};
  for (size_t pc = 0; pc < prog.size(); ++pc) {
    const sock_filter& f = prog[pc];
    uint32_t k = f.k;
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS: EXPECT_LE(k + 4, sizeof d); std::memcpy(&A, bytes + k, 4); break;
      case BPF_LD | BPF_W | BPF_LEN: A = sizeof d; break;
      case BPF_LDX | BPF_W | BPF_LEN: X = sizeof d; break;
      case BPF_LD | BPF_IMM: A = k; break;
      case BPF_LDX | BPF_IMM: X = k; break;
      case BPF_LD | BPF_MEM: A = M[k]; break;
      case BPF_LDX | BPF_MEM: X = M[k]; break;
      case BPF_ST: M[k] = A; break;
      case BPF_STX: M[k] = X; break;
      case BPF_ALU | BPF_AND | BPF_K: A &= k; break;
      case BPF_ALU | BPF_AND | BPF_X: A &= X; break;
      case BPF_ALU | BPF_OR | BPF_K: A |= k; break;
      case BPF_ALU | BPF_ADD | BPF_K: A += k; break;
      case BPF_ALU | BPF_SUB | BPF_K: A -= k; break;
      case BPF_ALU | BPF_RSH | BPF_K: A >>= k; break;
      case BPF_ALU | BPF_LSH | BPF_K: A <<= k; break;
      case BPF_ALU | BPF_NEG: A = -A; break;
      case BPF_MISC | BPF_TAX: X = A; break;
      case BPF_MISC | BPF_TXA: A = X; break;
      case BPF_JMP | BPF_JA: pc += k; break;
      case BPF_JMP | BPF_JEQ | BPF_K: pc += (A == k) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGT | BPF_K: pc += (A > k) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGE | BPF_K: pc += (A >= k) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JSET | BPF_K: pc += (A & k) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JEQ | BPF_X: pc += (A == X) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGT | BPF_X: pc += (A > X) ? f.jt : f.jf; break;
      case BPF_JMP | BPF_JGE | BPF_X: pc += (A >= X) ? f.jt : f.jf; break;
      case BPF_RET | BPF_K: return k;
      case BPF_RET | BPF_A: return A;
      default: ADD_FAILURE() << "unhandled BPF opcode 0x" << std::hex << f.code; return 0;
    }
  }
  ADD_FAILURE() << "fell off the end of the program";
  return 0;
}

// The kernel runs every filter and keeps the most restrictive verdict.
uint32_t verdict(const CompiledSeccomp& c, const Call& call) {
  auto rank = [](uint32_t r) {
    switch (r & SECCOMP_RET_ACTION_FULL) {
      case SECCOMP_RET_KILL_PROCESS: return 0;
      case SECCOMP_RET_KILL_THREAD: return 1;
      case SECCOMP_RET_TRAP: return 2;
      case SECCOMP_RET_ERRNO: return 3;
      case SECCOMP_RET_USER_NOTIF: return 4;
      case SECCOMP_RET_TRACE: return 5;
      case SECCOMP_RET_LOG: return 6;
      default: return 7;  // ALLOW
    }
  };
  uint32_t best = SECCOMP_RET_ALLOW;
  for (const auto& p : c.programs) {
    uint32_t r = run_bpf(p.insns, call);
    if (rank(r) < rank(best)) best = r;
  }
  return best;
}

CompiledSeccomp compile(const SeccompPolicy& p, bool audit = false) {
  auto c = compile_seccomp(p, audit);
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message());
  return c ? std::move(*c) : CompiledSeccomp{};
}

constexpr uint32_t kEperm = SECCOMP_RET_ERRNO | EPERM;

TEST(Seccomp, BuiltinDenySet) {
  auto c = compile({});
  ASSERT_EQ(c.programs.size(), 1u);
  for (int nr : {SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_bpf, SYS_perf_event_open,
                 SYS_init_module, SYS_finit_module, SYS_kexec_load, SYS_mount, SYS_umount2, SYS_pivot_root,
                 SYS_keyctl, SYS_add_key, SYS_userfaultfd, SYS_open_by_handle_at, 425 /* io_uring_setup */,
                 426 /* io_uring_enter */, 427 /* io_uring_register */, 428 /* open_tree */, 429 /* move_mount */,
                 430 /* fsopen */, SYS_setns})
    EXPECT_EQ(verdict(c, {nr}), kEperm) << "syscall " << nr;
  for (int nr : {SYS_read, SYS_write, SYS_openat, SYS_execve, SYS_getpid, SYS_clone, SYS_fork, SYS_kill})
    EXPECT_EQ(verdict(c, {nr}), SECCOMP_RET_ALLOW) << "syscall " << nr;
}

// socket(2)/socketpair(2): only unix, inet, inet6 and NETLINK_ROUTE pass; the family is
// compared on its low 32 bits as the kernel reads it; syscalls.allow: [socket] lifts it.
TEST(Seccomp, SocketFamiliesWithoutCgroupHooksDenied) {
  auto c = compile({});
  for (uint64_t fam : {AF_UNIX, AF_INET, AF_INET6}) {
    EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {fam, SOCK_STREAM, 0}}), SECCOMP_RET_ALLOW) << fam;
    EXPECT_TRUE(seccomp_socket_family_allowed(static_cast<int>(fam), 0));
  }
  EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {AF_NETLINK, SOCK_RAW, 0}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {AF_NETLINK, SOCK_RAW, 4 /* NETLINK_SOCK_DIAG */}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {AF_NETLINK, SOCK_RAW, 1ull << 32}}), kEperm);
  for (uint64_t fam : {AF_VSOCK, AF_PACKET, AF_ALG, AF_XDP, AF_TIPC, AF_BLUETOOTH, AF_CAN, AF_KEY, 0, 46, 63}) {
    EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {fam, SOCK_STREAM, 0}}), kEperm) << fam;
    EXPECT_EQ(verdict(c, {SYS_socket, AUDIT_ARCH_X86_64, {fam | (1ull << 32), SOCK_STREAM, 0}}), kEperm) << fam;
    EXPECT_EQ(verdict(c, {SYS_socketpair, AUDIT_ARCH_X86_64, {fam, SOCK_STREAM, 0}}), kEperm) << fam;
    EXPECT_FALSE(seccomp_socket_family_allowed(static_cast<int>(fam), 0));
  }
  EXPECT_EQ(verdict(c, {SYS_socketpair, AUDIT_ARCH_X86_64, {AF_UNIX, SOCK_STREAM, 0}}), SECCOMP_RET_ALLOW);
  int rules = 0;
  for (const auto& d : c.denied) rules += d.name == "socket" && !d.conds.empty();
  EXPECT_GT(rules, 40) << "every family below the bound is a rule with its argument test";

  SeccompPolicy open;
  open.allow = {"socket"};
  auto o = compile(open);
  EXPECT_EQ(verdict(o, {SYS_socket, AUDIT_ARCH_X86_64, {AF_VSOCK, SOCK_STREAM, 0}}), SECCOMP_RET_ALLOW);
}

TEST(Seccomp, IoctlTiocstiByArgumentLowWordOnly) {
  auto c = compile({});
  EXPECT_EQ(verdict(c, {SYS_ioctl, AUDIT_ARCH_X86_64, {0, TIOCSTI}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_ioctl, AUDIT_ARCH_X86_64, {0, TIOCLINUX}}), kEperm);
  // The kernel truncates cmd to unsigned int: the upper word must not matter.
  EXPECT_EQ(verdict(c, {SYS_ioctl, AUDIT_ARCH_X86_64, {0, TIOCSTI | (1ull << 32)}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_ioctl, AUDIT_ARCH_X86_64, {0, TCGETS}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_ioctl, AUDIT_ARCH_X86_64, {0, FIONREAD}}), SECCOMP_RET_ALLOW);
}

TEST(Seccomp, UserNamespacesDenied) {
  auto c = compile({});
  EXPECT_EQ(verdict(c, {SYS_unshare, AUDIT_ARCH_X86_64, {CLONE_NEWUSER}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_unshare, AUDIT_ARCH_X86_64, {CLONE_NEWUSER | CLONE_NEWNS}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_unshare, AUDIT_ARCH_X86_64, {CLONE_FILES}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_clone, AUDIT_ARCH_X86_64, {CLONE_NEWUSER | SIGCHLD}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_clone, AUDIT_ARCH_X86_64, {CLONE_VM | CLONE_THREAD | CLONE_SIGHAND}}), SECCOMP_RET_ALLOW);
  // clone3's flags live in memory: ENOSYS makes libc fall back to the filterable clone.
  EXPECT_EQ(verdict(c, {SYS_clone3}), SECCOMP_RET_ERRNO | ENOSYS);
}

TEST(Seccomp, OtherProcessesCannotBeRetuned) {
  auto c = compile({});
  // Self (pid 0) is fine, any other pid is not.
  EXPECT_EQ(verdict(c, {SYS_prlimit64, AUDIT_ARCH_X86_64, {0, RLIMIT_NOFILE}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_prlimit64, AUDIT_ARCH_X86_64, {1, RLIMIT_NOFILE}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_setpriority, AUDIT_ARCH_X86_64, {PRIO_PROCESS, 0, 10}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_setpriority, AUDIT_ARCH_X86_64, {PRIO_USER, 0, 19}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_setpriority, AUDIT_ARCH_X86_64, {PRIO_PROCESS, 1234, 19}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_sched_setaffinity, AUDIT_ARCH_X86_64, {0}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_sched_setaffinity, AUDIT_ARCH_X86_64, {1}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_ioprio_set, AUDIT_ARCH_X86_64, {1 /* WHO_PROCESS */, 0}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_ioprio_set, AUDIT_ARCH_X86_64, {3 /* WHO_USER */, 0}}), kEperm);
  // The upper word counts too: 1<<32 is not "self" for seccomp, so it is denied.
  EXPECT_EQ(verdict(c, {SYS_prlimit64, AUDIT_ARCH_X86_64, {1ull << 32}}), kEperm);
  SeccompPolicy p;
  p.allow = {"prlimit64"};
  EXPECT_EQ(verdict(compile(p), {SYS_prlimit64, AUDIT_ARCH_X86_64, {1}}), SECCOMP_RET_ALLOW);
}

TEST(Seccomp, ForeignAbisKilled) {
  auto c = compile({});
  EXPECT_EQ(verdict(c, {20 /* i386 getpid */, AUDIT_ARCH_I386}), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(verdict(c, {SYS_getpid, AUDIT_ARCH_AARCH64}), SECCOMP_RET_KILL_PROCESS);
  // x32: same AUDIT_ARCH as x86_64 but syscall numbers with bit 30 set.
  uint32_t x32 = verdict(c, {SYS_getpid | 0x40000000});
  EXPECT_NE(x32, SECCOMP_RET_ALLOW);
}

TEST(Seccomp, Actions) {
  SeccompPolicy kill;
  kill.action = SeccompAction::kill;
  EXPECT_EQ(verdict(compile(kill), {SYS_bpf}), SECCOMP_RET_KILL_PROCESS);
  SeccompPolicy log;
  log.action = SeccompAction::log;
  auto lc = compile(log);
  EXPECT_EQ(verdict(lc, {SYS_bpf}), SECCOMP_RET_LOG);
  EXPECT_TRUE(lc.log);
  SeccompPolicy eacces;
  eacces.errno_value = EACCES;
  EXPECT_EQ(verdict(compile(eacces), {SYS_bpf}), SECCOMP_RET_ERRNO | EACCES);
  // Audit mode logs instead of denying, whatever the configured action.
  EXPECT_EQ(verdict(compile(kill, /*audit=*/true), {SYS_bpf}), SECCOMP_RET_LOG);
}

TEST(Seccomp, ProfileDenyAndAllow) {
  SeccompPolicy p;
  p.deny = {"mknod", "mknodat"};
  p.allow = {"ptrace"};
  auto c = compile(p);
  EXPECT_EQ(verdict(c, {SYS_mknod}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_mknodat}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_ptrace}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_bpf}), kEperm);
  bool found = false;
  for (const auto& d : c.denied) found |= d.name == "mknod" && d.rule == "profile";
  EXPECT_TRUE(found);
}

TEST(Seccomp, BuiltinOff) {
  SeccompPolicy p;
  p.builtin = false;
  p.deny = {"chmod"};
  auto c = compile(p);
  EXPECT_EQ(verdict(c, {SYS_bpf}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_chmod}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_getpid, AUDIT_ARCH_I386}), SECCOMP_RET_KILL_PROCESS);
}

TEST(Seccomp, BadInputNamesTheField) {
  SeccompPolicy p;
  p.deny = {"no_such_syscall"};
  auto c = compile_seccomp(p, false);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("syscalls.deny"), std::string::npos);
  EXPECT_NE(c.error().message().find("no_such_syscall"), std::string::npos);
  SeccompPolicy q;
  q.allow = {"nope"};
  auto d = compile_seccomp(q, false);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message().find("syscalls.allow"), std::string::npos);
  SeccompPolicy r;
  r.errno_value = 0;
  EXPECT_FALSE(compile_seccomp(r, false).has_value());
}

TEST(Seccomp, PfcExportNamesTheRules) {
  auto pfc = seccomp_pfc({}, false);
  ASSERT_TRUE(pfc.has_value()) << pfc.error().message();
  EXPECT_NE(pfc->find("ptrace"), std::string::npos);
  EXPECT_NE(pfc->find("ERRNO(1)"), std::string::npos);
  EXPECT_NE(pfc->find("ERRNO(38)"), std::string::npos);  // clone3 -> ENOSYS
}

// A Docker-style allowlist: default ERRNO, a few syscalls allowed, one with an argument.
constexpr const char* kOci = R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [
    {"names": ["read", "write", "exit_group", "getpid", "ptrace"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["syslog"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYSLOG"]}},
    {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}
  ]
})";

TEST(Seccomp, OciProfileStacksOnTheBuiltinSet) {
  SeccompPolicy p;
  p.oci_json = kOci;
  p.allow = {"personality"};  // let the OCI filter decide personality
  auto c = compile(p);
  ASSERT_EQ(c.programs.size(), 2u);
  EXPECT_EQ(verdict(c, {SYS_read}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_getpid}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_openat}), kEperm);                        // OCI default
  EXPECT_EQ(verdict(c, {SYS_getppid}), SECCOMP_RET_ERRNO | 13);       // errnoRet
  EXPECT_EQ(verdict(c, {SYS_personality, AUDIT_ARCH_X86_64, {0}}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(verdict(c, {SYS_personality, AUDIT_ARCH_X86_64, {8}}), kEperm);
  EXPECT_EQ(verdict(c, {SYS_syslog}), kEperm);                        // needs a capability we never grant
  // OCI allows ptrace, the built-in set still denies it: OCI can only narrow.
  EXPECT_EQ(verdict(c, {SYS_ptrace}), kEperm);
}

TEST(Seccomp, OciErrorsHaveLocations) {
  SeccompPolicy p;
  p.oci_source = "docker.json";
  p.oci_json = "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [ , ]\n}";
  auto c = compile_seccomp(p, false);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("docker.json:3:"), std::string::npos) << c.error().message();

  p.oci_json = R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]})";
  c = compile_seccomp(p, false);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("syscalls[0].action"), std::string::npos) << c.error().message();
  EXPECT_NE(c.error().message().find("SCMP_ACT_BOGUS"), std::string::npos);

  p.oci_json = R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]})";
  c = compile_seccomp(p, false);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("syscalls[0].args[0].index"), std::string::npos) << c.error().message();

  p.oci_json = R"({"syscalls": []})";
  c = compile_seccomp(p, false);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("defaultAction"), std::string::npos);
}

}  // namespace
}  // namespace agentcage::core

namespace agentcage::core {
namespace {

// One parser: `profile lint` (parse_oci_seccomp) and `run` (compile_seccomp) accept and
// refuse the same files, with the same message, for every OCI fixture.
TEST(Seccomp, LintAndRunAgreeOnEveryOciFixture) {
  const std::string dir = std::string(AGENTCAGE_SOURCE_DIR) + "/tests/unit/fixtures/profiles/oci";
  int seen = 0, refused = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto lint = parse_oci_seccomp(e.path().string());
    SeccompPolicy p;
    p.oci_json = ss.str();
    p.oci_source = e.path().string();
    auto run = compile_seccomp(p, false);
    EXPECT_EQ(lint.has_value(), run.has_value()) << e.path() << ": lint " << (lint ? "ok" : lint.error().message())
                                                 << ", run " << (run ? "ok" : run.error().message());
    if (!lint && !run) {
      EXPECT_EQ(lint.error().message(), run.error().message());
      ++refused;
    }
    ++seen;
  }
  EXPECT_GE(seen, 5);
  EXPECT_GE(refused, 3);  // bad_action, bad_syntax, notify
  auto notify = parse_oci_seccomp(dir + "/notify.json");
  ASSERT_FALSE(notify.has_value());
  EXPECT_NE(notify.error().message().find("notify.json: syscalls[0]"), std::string::npos) << notify.error().message();
  EXPECT_NE(notify.error().message().find("SCMP_ACT_NOTIFY needs a seccomp user-notification supervisor"),
            std::string::npos);
}

}  // namespace
}  // namespace agentcage::core
