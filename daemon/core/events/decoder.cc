// SPDX-License-Identifier: Apache-2.0
#include "core/events/decoder.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <agentcage/abi.h>

#include <cstddef>
#include <cstring>
#include <vector>
#include <fmt/format.h>

#include "core/base/fs.h"
#include "core/base/mountinfo.h"
#include "core/base/text.h"
#include "core/events/event_json.h"

namespace agentcage::core {
namespace {

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A NUL-terminated string inside a fixed array, trusting neither the terminator nor the
// length the kernel reported beyond the array.
std::string fixed_string(const char* p, size_t cap, uint32_t len_hint) {
  size_t lim = len_hint ? std::min<size_t>(len_hint, cap) : cap;
  return std::string(p, strnlen(p, lim));
}

template <class T>
Result<T> read_record(std::span<const std::byte> rec, const char* name) {
  if (rec.size() < sizeof(T))
    return error(fmt::format("{} record: {} bytes, expected {}", name, rec.size(), sizeof(T)));
  T out;
  std::memcpy(&out, rec.data(), sizeof(T));
  return out;
}

void fill_process(v1::Process* p, const ac_event_header& h, const DecodeContext& ctx) {
  p->set_pid(h.pid);
  p->set_tid(h.tid);
  p->set_ppid(h.ppid);
  p->set_uid(h.uid);
  p->set_gid(h.gid);
  p->set_cgroup_id(h.cgroup_id);
  p->set_start_time_ns(h.start_ns);
  // Consecutive records mostly come from the same process: format its id once.
  thread_local uint32_t last_pid = 0;
  thread_local uint64_t last_start = 0;
  thread_local std::string last_id, last_boot;
  if (h.pid != last_pid || h.start_ns != last_start || last_boot != ctx.boot_id) {
    last_pid = h.pid;
    last_start = h.start_ns;
    last_boot = ctx.boot_id;
    last_id = make_exec_id(ctx.boot_id, h.pid, h.start_ns);
  }
  p->set_exec_id(last_id);
}

const char* const kFileOps[] = {"",      "open",  "creat",   "unlink", "rmdir",    "rename",  "mkdir",
                                 "link",  "symlink", "chmod", "chown",  "truncate", "setxattr"};

// A length field from the kernel must fit its array; anything else is a malformed record.
Status check_len(const char* rec, const char* field, uint32_t len, size_t cap) {
  if (len > cap) return error(fmt::format("{} record: {} is {} bytes, the field holds {}", rec, field, len, cap));
  return {};
}

// NUL-separated args; n is clamped to the array so a lying length cannot read past it.
void split_argv(const char* buf, size_t n, size_t cap, v1::Process* proc) {
  n = std::min(n, cap);
  size_t i = 0;
  while (i < n) {
    size_t len = strnlen(buf + i, n - i);
    proc->add_argv(std::string(buf + i, len));
    i += len + 1;
  }
}

const char* net_op_name(uint8_t op) {
  switch (op) {
    case AC_NET_CONNECT: return "connect";
    case AC_NET_BIND: return "bind";
    case AC_NET_SENDMSG: return "sendmsg";  // sendto(2) and sendmsg(2) with a destination
    case AC_NET_LISTEN: return "listen";
    case AC_NET_ACCEPT: return "accept";
    case AC_NET_SOCKET: return "socket";
    default: return "unknown";
  }
}

std::string net_protocol(const ac_net_event& r) {
  if (r.family == AF_UNIX) {
    switch (r.sock_type) {
      case SOCK_STREAM: return "unix-stream";
      case SOCK_DGRAM: return "unix-dgram";
      case SOCK_SEQPACKET: return "unix-seqpacket";
      default: return fmt::format("unix-{}", r.sock_type);
    }
  }
  if (r.sock_type == SOCK_RAW) return "raw";
  if (r.protocol == IPPROTO_TCP) return "tcp";
  if (r.protocol == IPPROTO_UDP) return "udp";
  if (r.protocol == IPPROTO_ICMP || r.protocol == IPPROTO_ICMPV6) return "icmp";
  return fmt::format("ipproto-{}", r.protocol);
}

// IPv4 arrives in mapped form with AC_NET_F_V4; a v4-mapped IPv6 address the process
// used arrives with family AF_INET6 and is shown as a.b.c.d with v4_mapped set.
void fill_sockaddr(v1::SockAddr* a, const ac_net_event& r, const uint8_t* addr, uint16_t port) {
  char buf[INET6_ADDRSTRLEN] = {};
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (r.family == AF_UNIX) {
    a->set_family("unix");
    a->set_address(std::string(r.unix_path, strnlen(r.unix_path, std::min<size_t>(r.unix_path_len, sizeof r.unix_path))));
    return;
  }
  bool mapped = std::memcmp(addr, kMapped, sizeof kMapped) == 0;
  if ((r.net_flags & AC_NET_F_V4) || mapped) {
    inet_ntop(AF_INET, addr + 12, buf, sizeof buf);
    a->set_family((r.net_flags & AC_NET_F_V4) ? "inet" : "inet6");
    a->set_v4_mapped(!(r.net_flags & AC_NET_F_V4));
  } else {
    inet_ntop(AF_INET6, addr, buf, sizeof buf);
    a->set_family("inet6");
  }
  a->set_address(buf);
  a->set_port(port);
}

void fill_net_op(v1::NetOp* n, const ac_net_event& r) {
  n->set_op(net_op_name(r.op));
  n->set_protocol(net_protocol(r));
  if (r.op == AC_NET_SOCKET) return;
  bool local = r.op == AC_NET_BIND || r.op == AC_NET_LISTEN;
  fill_sockaddr(local ? n->mutable_local() : n->mutable_remote(), r, r.addr, r.port);
  if (r.op == AC_NET_ACCEPT) fill_sockaddr(n->mutable_local(), r, r.local_addr, r.local_port);
  n->set_dns_redirected(r.net_flags & AC_NET_F_DNS_REDIRECT);
  n->set_learned(r.net_flags & AC_NET_F_LEARNED);
  n->set_name_checked(r.net_flags & AC_NET_F_NAME_CHECK);
}

}  // namespace

std::string sockaddr_text(const v1::SockAddr& a) {
  if (a.family() == "unix") return a.address();
  if (a.family() == "inet6" && !a.v4_mapped()) return fmt::format("[{}]:{}", a.address(), a.port());
  return fmt::format("{}{}:{}", a.v4_mapped() ? "::ffff:" : "", a.address(), a.port());
}

// "connect 127.0.0.1:9/tcp", "connect /run/x.sock/unix-stream", "socket raw"
std::string net_what(const v1::NetOp& n) {
  if (n.op() == "socket") return "socket " + n.protocol();
  const auto& a = n.has_remote() ? n.remote() : n.local();
  if (!n.name().empty())
    return fmt::format("{} {} ({})/{}{}", n.op(), printable_text(n.name()), sockaddr_text(a), n.protocol(),
                       n.wire() == "tls-sni"     ? ", by TLS SNI"
                       : n.wire() == "http-host" ? ", by HTTP Host"
                       : n.name_checked()        ? ", to agentcage's name check"
                                                 : "");
  return fmt::format("{} {}/{}{}", n.op(), sockaddr_text(a), n.protocol(),
                     n.dns_redirected() ? " (DNS, to agentcage's resolver)"
                     : n.learned()      ? " (an address an allowed name resolved to)"
                                        : "");
}

namespace {

const char* net_action(uint8_t action) {
  switch (action) {
    case AC_NET_DENY: return "deny";
    case AC_NET_KILL: return "kill";
    case AC_NET_AUDIT: return "audit";
    default: return "allow";
  }
}

// The policy clause that decided, with why: "network.default: deny (no allow rule
// matches address, port and protocol)".
std::string net_rule(const ac_net_event& r) {
  const char* why = "";
  switch (r.reason) {
    case AC_NET_R_NO_RULE: why = "no allow rule matches address, port and protocol"; break;
    case AC_NET_R_UNIX_PATH: why = "unix socket name not in the unix allow list"; break;
    case AC_NET_R_SOCKET_TYPE: why = "only TCP and UDP inet sockets may be created"; break;
    case AC_NET_R_LOCAL_ALIAS:
      why = "the address reaches this host (as 127.0.0.1, ::1, or as the IPv4 address of an IPv4-compatible one), "
            "which no rule allows";
      break;
    default: why = "unknown reason"; break;
  }
  if (r.net_flags & AC_NET_F_DNS_REDIRECT)
    return fmt::format("network.domains: {} (an IPv6 DNS query, and this host has no ::1 for agentcage's resolver)",
                       net_action(r.policy_action));
  // A rule's own action (a blocked prefix inside a wider allow) or the sandbox default.
  const char* clause = (r.net_flags & AC_NET_F_RULE_ACTION) ? "network.rules: action" : "network.default:";
  const char* scope = (r.net_flags & AC_NET_F_RULE_ACTION) ? " of a rule for a prefix containing the address" : "";
  return fmt::format("{} {}{} ({}{})", clause, net_action(r.policy_action), scope, why,
                     (r.net_flags & AC_NET_F_AUDIT_MODE) ? "; audit mode: not enforced" : "");
}

}  // namespace

static v1::Event::KindCase kind_of(uint16_t type) {
  switch (type) {
    case AC_EV_EXEC:
    case AC_EV_EXEC_FAILED: return v1::Event::kExec;
    case AC_EV_FORK: return v1::Event::kFork;
    case AC_EV_EXIT: return v1::Event::kExit;
    case AC_EV_FILE:
    case AC_EV_FILE2: return v1::Event::kFile;
    case AC_EV_SYSCALL: return v1::Event::kSyscall;
    default: return v1::Event::KIND_NOT_SET;
  }
}

void reset_event(v1::Event& ev, v1::Event::KindCase next) {
  // Message::Clear() deletes sub-messages (proto3, no arena); clearing field by field
  // keeps the Process and the oneof message, and the capacity of their strings and
  // repeated fields, for the next record: no allocation per record in the steady state.
  // kEventFields (checked by a unit test against the descriptor) keeps this in step
  // with event.proto.
  ev.clear_seq();
  ev.clear_node();
  ev.clear_time_ns();
  ev.clear_ktime_ns();
  ev.clear_sandbox_id();
  ev.clear_host_mode();
  if (ev.has_process()) ev.mutable_process()->Clear();  // strings only: capacity kept
  if (ev.kind_case() != next) {
    ev.clear_kind();
    return;
  }
  switch (next) {
    case v1::Event::kExec: ev.mutable_exec()->Clear(); break;
    case v1::Event::kFork: ev.mutable_fork()->Clear(); break;
    case v1::Event::kExit: ev.mutable_exit()->Clear(); break;
    case v1::Event::kFile: ev.mutable_file()->Clear(); break;
    case v1::Event::kSyscall: ev.mutable_syscall()->Clear(); break;
    default: ev.clear_kind(); break;
  }
}

// The errno a negative kernel return value carries. Records come from the kernel but are
// parsed as untrusted bytes: INT32_MIN (whose negation overflows an int) or any value
// outside the kernel's -4095..-1 carries none.
int errno_of(int64_t ret) { return ret < 0 && ret >= -4095 ? static_cast<int>(-ret) : 0; }

std::string errno_name(int err) {
  if (err <= 0) return {};
  const char* n = strerrorname_np(err);
  return n ? n : fmt::format("errno {}", err);
}

const std::string& syscall_name_ref(uint32_t nr) {
  // libseccomp scans its table and mallocs per call: resolve each number once.
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v(1024);
    for (int i = 0; i < static_cast<int>(v.size()); ++i)
      if (char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, i)) {
        v[static_cast<size_t>(i)] = n;
        free(n);
      }
    return v;
  }();
  static const std::string none;
  return nr < names.size() ? names[nr] : none;
}

std::string syscall_name(uint32_t nr) {
  const std::string& n = syscall_name_ref(nr);
  return n.empty() ? fmt::format("syscall_{}", nr) : n;
}

const char* file_op_name(uint32_t op) {
  return op < std::size(kFileOps) && op ? kFileOps[op] : "unknown";
}

DecodeContext DecodeContext::for_this_host() {
  DecodeContext c;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  c.node = host;
  auto b = read_file("/proc/sys/kernel/random/boot_id");
  c.boot_id = b ? b->substr(0, b->find('\n')) : "unknown";
  c.boot_to_real_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME);
  return c;
}

std::string make_exec_id(const std::string& boot_id, uint32_t pid, uint64_t start_boottime_ns) {
  static const uint64_t ns_per_tick = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  return fmt::format("{}:{}:{}", boot_id.substr(0, 8), start_boottime_ns / ns_per_tick, pid);
}

std::string sandbox_id_string(uint64_t key) { return fmt::format("{:016x}", key); }

Status decode_record_into(std::span<const std::byte> rec, const DecodeContext& ctx, v1::Event& ev) {
  auto hdr = read_record<ac_event_header>(rec, "header");
  if (!hdr) return std::unexpected(hdr.error());
  if (hdr->abi_version != AC_ABI_VERSION)
    return error(fmt::format("record ABI version {}, this build speaks {}", hdr->abi_version, AC_ABI_VERSION),
                 "the BPF object and the user-space binary come from different builds");
  if (hdr->size != rec.size())
    return error(fmt::format("record type {}: header says {} bytes, ring buffer gave {}", hdr->type, hdr->size,
                             rec.size()));

  reset_event(ev, kind_of(hdr->type));
  ev.set_node(ctx.node);
  ev.set_ktime_ns(hdr->ktime_ns);
  // Unsigned: a ktime near 2^63 (a damaged or forged record) wraps instead of being a
  // signed overflow.
  ev.set_time_ns(hdr->ktime_ns + static_cast<uint64_t>(ctx.boot_to_real_ns));
  if (hdr->sandbox_id) {
    thread_local uint64_t last_key = 0;
    thread_local std::string last_str;
    if (hdr->sandbox_id != last_key) {
      last_key = hdr->sandbox_id;
      last_str = sandbox_id_string(last_key);
    }
    ev.set_sandbox_id(last_str);
  }
  ev.set_host_mode((hdr->flags & AC_F_HOST_MODE) != 0);
  auto* proc = ev.mutable_process();
  fill_process(proc, *hdr, ctx);

  switch (hdr->type) {
    case AC_EV_EXEC: {
      auto r = read_record<ac_exec_event>(rec, "exec");
      if (!r) return std::unexpected(r.error());
      // Exec lengths are clamped to their arrays (fixed_string), as in ABI 1.
      auto* x = ev.mutable_exec();
      x->set_filename(fixed_string(r->filename, sizeof r->filename, r->filename_len));
      x->set_argc(r->argc);
      x->set_filename_truncated((hdr->flags & AC_F_FILENAME_TRUNCATED) != 0);
      if (r->interp_len) x->set_interpreter(fixed_string(r->interp, sizeof r->interp, r->interp_len));
      // The resolved image when the kernel walked it; the name given to execve otherwise.
      proc->set_binary(r->exe_len ? fixed_string(r->exe, sizeof r->exe, r->exe_len) : x->filename());
      if (r->cwd_len) proc->set_cwd(fixed_string(r->cwd, sizeof r->cwd, r->cwd_len));
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      split_argv(r->argv, r->argv_len, sizeof r->argv, proc);
      proc->set_argv_truncated((hdr->flags & AC_F_ARGV_TRUNCATED) != 0);
      break;
    }
    case AC_EV_EXEC_FAILED: {
      auto r = read_record<ac_exec_failed_event>(rec, "exec_failed");
      if (!r) return std::unexpected(r.error());
      if (auto st = check_len("exec_failed", "filename_len", r->filename_len, sizeof r->filename); !st)
        return std::unexpected(st.error());
      if (auto st = check_len("exec_failed", "argv_len", r->argv_len, sizeof r->argv); !st)
        return std::unexpected(st.error());
      if (r->result >= 0)
        return error(fmt::format("exec_failed record: result {} is not an error", r->result));
      auto* x = ev.mutable_exec();
      x->set_filename(fixed_string(r->filename, sizeof r->filename, r->filename_len));
      x->set_filename_truncated((hdr->flags & AC_F_FILENAME_TRUNCATED) != 0);
      x->set_argc(r->argc);
      x->set_result(r->result);
      x->set_error(errno_name(errno_of(r->result)));
      x->set_killed((hdr->flags & AC_F_KILLED) != 0);
      // The process keeps its old image: the argv it tried goes with the exec, not the process.
      v1::Process tried;
      split_argv(r->argv, r->argv_len, sizeof r->argv, &tried);
      *x->mutable_argv() = tried.argv();
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      // The cwd of the moment, for a relative filename: the process table's is older.
      if (r->cwd_len) {
        if (auto st = check_len("exec_failed", "cwd_len", r->cwd_len, sizeof r->cwd); !st)
          return std::unexpected(st.error());
        proc->set_cwd(fixed_string(r->cwd, sizeof r->cwd, r->cwd_len));
      }
      break;
    }
    case AC_EV_FILE:
    case AC_EV_FILE2: {
      const bool two = hdr->type == AC_EV_FILE2;
      auto r = read_record<ac_file_event>(rec, "file");
      if (!r) return std::unexpected(r.error());
      if (two && rec.size() != sizeof(ac_file2_event))
        return error(fmt::format("file2 record: {} bytes, expected {}", rec.size(), sizeof(ac_file2_event)));
      if (!two && rec.size() != sizeof(ac_file_event))
        return error(fmt::format("file record: {} bytes, expected {}", rec.size(), sizeof(ac_file_event)));
      if (r->op == 0 || r->op >= std::size(kFileOps))
        return error(fmt::format("file record: unknown op {}", r->op));
      if (auto st = check_len("file", "path_len", r->path_len, sizeof r->path); !st)
        return std::unexpected(st.error());
      if (auto st = check_len("file", "path2_len", r->path2_len, two ? AC_PATH_MAX : 0); !st)
        return std::unexpected(st.error());
      auto* f = ev.mutable_file();
      f->set_op(kFileOps[r->op]);
      if (const auto& n = syscall_name_ref(r->nr); !n.empty())
        f->set_syscall(n);
      else
        f->set_syscall(syscall_name(r->nr));
      f->set_path(fixed_string(r->path, sizeof r->path, r->path_len));
      f->set_path_resolved((hdr->flags & AC_F_PATH_RESOLVED) != 0);
      f->set_path_truncated((hdr->flags & (AC_F_PATH_TRUNCATED | AC_F_PATH2_TRUNCATED)) != 0);
      if (two && r->path2_len) {
        const char* p2 = reinterpret_cast<const char*>(rec.data()) + offsetof(ac_file2_event, path2);
        std::string s2 = fixed_string(p2, AC_PATH_MAX, r->path2_len);
        if (r->op == AC_FOP_SETXATTR)
          f->set_xattr_name(std::move(s2));
        else
          f->set_path2(std::move(s2));
      }
      f->set_flags(r->open_flags);
      f->set_mode(r->mode);
      if (r->op == AC_FOP_CHOWN) {
        f->set_owner_uid(r->owner_uid);
        f->set_owner_gid(r->owner_gid);
      }
      f->set_dirfd(r->dirfd);
      f->set_result(r->result);
      if (r->result < 0) f->set_error(errno_name(errno_of(r->result)));
      if (r->result < 0 && (hdr->flags & AC_F_FOLDED)) f->set_repeats(r->repeats);
      break;
    }
    case AC_EV_SYSCALL: {
      auto r = read_record<ac_syscall_event>(rec, "syscall");
      if (!r) return std::unexpected(r.error());
      // Audit mode records a syscall the profile would refuse whatever its result.
      if (r->result >= 0 && !(hdr->flags & AC_F_AUDIT))
        return error(fmt::format("syscall record: result {} is not an error", r->result));
      auto* x = ev.mutable_syscall();
      x->set_nr(r->nr);
      x->set_name(syscall_name(r->nr));
      x->set_result(r->result);
      x->set_error(errno_name(errno_of(r->result)));
      for (uint64_t a : r->args) x->add_args(a);
      break;
    }
    case AC_EV_FORK: {
      auto r = read_record<ac_fork_event>(rec, "fork");
      if (!r) return std::unexpected(r.error());
      // The record describes the child; the event is about the parent that forked.
      auto* f = ev.mutable_fork();
      f->set_child_pid(hdr->pid);
      f->set_child_exec_id(make_exec_id(ctx.boot_id, hdr->pid, r->child_start_ns));
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      proc->set_pid(hdr->ppid);
      proc->set_tid(hdr->ppid);
      proc->set_ppid(0);
      proc->clear_exec_id();
      proc->clear_start_time_ns();
      break;
    }
    case AC_EV_EXIT: {
      auto r = read_record<ac_exit_event>(rec, "exit");
      if (!r) return std::unexpected(r.error());
      auto* x = ev.mutable_exit();
      x->set_status(r->exit_code);
      if (WIFSIGNALED(r->exit_code)) {
        x->set_signal(WTERMSIG(r->exit_code));
        x->set_core_dumped(WCOREDUMP(r->exit_code));
        x->set_oom_killed((r->exit_flags & AC_EXIT_OOM_VICTIM) != 0);
      } else {
        x->set_code(WEXITSTATUS(r->exit_code));
      }
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      break;
    }
    case AC_EV_NET: {
      auto r = read_record<ac_net_event>(rec, "net");
      if (!r) return std::unexpected(r.error());
      fill_net_op(ev.mutable_net(), *r);
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      break;
    }
    case AC_EV_NET_VIOLATION: {
      auto r = read_record<ac_net_event>(rec, "net violation");
      if (!r) return std::unexpected(r.error());
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      auto* v = ev.mutable_violation();
      auto* n = v->mutable_net();
      fill_net_op(n, *r);
      if (r->action == AC_NET_DENY || r->action == AC_NET_KILL) {
        n->set_result(-EPERM);
        n->set_error("EPERM");
      }
      v->set_mechanism("cgroup-bpf");
      v->set_action(net_action(r->action));
      v->set_rule(net_rule(*r));
      v->set_what(net_what(*n));
      break;
    }
    case AC_EV_LSM_DENY: {
      auto r = read_record<ac_lsm_deny_event>(rec, "lsm_deny");
      if (!r) return std::unexpected(r.error());
      // An exec is denied either at bprm_check or, under a deny-open rule, when exec opens
      // the image (file_open of a file opened with __FMODE_EXEC, 0x20: in f_flags on
      // every kernel, in f_mode too on newer ones).
      bool exec = r->hook == AC_LSM_BPRM_CHECK || ((r->f_mode | r->f_flags) & 0x20) != 0;
      const char* hook = r->hook == AC_LSM_BPRM_CHECK ? "bprm_check_security"
                         : r->hook == AC_LSM_FILE_OPEN ? "file_open"
                                                       : "unknown";
      auto* v = ev.mutable_violation();
      v->set_mechanism("bpf-lsm");
      v->set_action("deny");
      v->set_rule(ctx.lsm_rule_name ? ctx.lsm_rule_name(r->rule_id) : fmt::format("inode rule {}", r->rule_id));
      auto* f = v->mutable_file();
      f->set_op(exec ? "exec" : "open");
      f->set_path(fixed_string(r->path, sizeof r->path, r->path_len));
      f->set_path_truncated((hdr->flags & AC_F_PATH_TRUNCATED) != 0);
      f->set_path_resolved((hdr->flags & (AC_F_PATH_TRUNCATED | AC_F_READ_FAULT)) == 0);
      f->set_flags(r->f_flags);
      f->set_result(r->ret);
      f->set_error(errno_name(errno_of(r->ret)));
      v->set_what(fmt::format("{} {} (lsm/{}, inode {}:{} {})", f->op(), f->path(), hook, r->dev >> 20,
                              r->dev & 0xfffff, r->ino));
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      break;
    }
    default:
      return error(fmt::format("unknown record type {} ({} bytes)", hdr->type, rec.size()));
  }
  return {};
}

Result<v1::Event> decode_record(std::span<const std::byte> rec, const DecodeContext& ctx) {
  v1::Event ev;
  if (auto st = decode_record_into(rec, ctx, ev); !st) return std::unexpected(st.error());
  return ev;
}

std::string to_json_line(const v1::Event& ev) {
  std::string out;
  out.reserve(512);
  append_event_json(ev, out);
  return out;
}

namespace {
std::string text_line_raw(const v1::Event& ev) {
  time_t secs = static_cast<time_t>(ev.time_ns() / 1'000'000'000);
  struct tm tm{};
  localtime_r(&secs, &tm);
  char ts[32];
  strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::string head = fmt::format("{}.{:06} ", ts, (ev.time_ns() % 1'000'000'000) / 1000);
  const auto& p = ev.process();
  std::string argv;
  for (const auto& a : p.argv()) argv += (argv.empty() ? "" : " ") + a;
  switch (ev.kind_case()) {
    case v1::Event::kExec:
      if (ev.exec().result() < 0)
        return head + fmt::format("execerr {:>7} {} {}{}", p.pid(), ev.exec().filename(), ev.exec().error(),
                                  ev.exec().killed() ? " (killed)" : "");
      return head + fmt::format("exec    {:>7} {} {}", p.pid(), ev.exec().filename(), argv);
    case v1::Event::kFile: {
      const auto& f = ev.file();
      std::string line = head + fmt::format("{:<7} {:>7} {}", f.op(), p.pid(), f.path());
      if (!f.path2().empty()) line += " -> " + f.path2();
      if (!f.xattr_name().empty()) line += " " + f.xattr_name();
      if (f.result() < 0) line += " = " + f.error();
      if (f.repeats()) line += fmt::format(" (and {} more identical)", f.repeats());
      return line;
    }
    case v1::Event::kSyscall:
      if (ev.syscall().result() >= 0)  // audit mode: one the profile would refuse, which succeeded
        return head + fmt::format("audited {:>7} {} {} = {}", p.pid(), p.comm(), ev.syscall().name(), ev.syscall().result());
      return head + fmt::format("denied  {:>7} {} {} = {}", p.pid(), p.comm(), ev.syscall().name(), ev.syscall().error());
    case v1::Event::kFork:
      return head + fmt::format("fork    {:>7} {} -> {}", p.pid(), p.comm(), ev.fork().child_pid());
    case v1::Event::kExit:
      if (ev.exit().signal())
        return head + fmt::format("exit    {:>7} {} signal {}{}", p.pid(), p.comm(), ev.exit().signal(),
                                  ev.exit().oom_killed() ? " (OOM killer)" : "");
      return head + fmt::format("exit    {:>7} {} code {}", p.pid(), p.comm(), ev.exit().code());
    case v1::Event::kNet:
      return head + fmt::format("net     {:>7} {} {}", p.pid(), p.comm(), net_what(ev.net()));
    case v1::Event::kViolation:
      return head + fmt::format("VIOLATION {:>5} {} {} {} ({}, {})", p.pid(), p.comm(), ev.violation().action(), ev.violation().what(),
                                ev.violation().mechanism(), ev.violation().rule());
    case v1::Event::kSandbox:
      return head + fmt::format("sandbox {} uid {} profile '{}'{}", ev.sandbox().phase(), ev.sandbox().sandbox().owner_uid(),
                                ev.sandbox().sandbox().profile(),
                                ev.sandbox().reason().empty() ? "" : " (" + ev.sandbox().reason() + ")");
    case v1::Event::kDns: {
      const auto& d = ev.dns();
      std::string answers;
      for (const auto& a : d.answers()) answers += " " + a;
      return head + fmt::format("dns     {:>7} {} {} ({}) {}{}", p.pid(), d.type(), d.name(), d.transport(), d.rcode(),
                                answers);
    }
    case v1::Event::kLoss:
      return head + fmt::format("LOSS    {} events lost ({}, {})", ev.loss().count(), ev.loss().reason(),
                                ev.loss().where());
    default:
      return head + "event";
  }
}
}  // namespace

// Every field may hold kernel bytes: the whole line is escaped, so none can forge another.
std::string to_text_line(const v1::Event& ev) { return escape_text(text_line_raw(ev)); }

}  // namespace agentcage::core
