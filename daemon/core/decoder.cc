// SPDX-License-Identifier: Apache-2.0
#include "core/decoder.h"

#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <agentcage/abi.h>

#include <cstring>
#include <fmt/format.h>

#include "core/cgroup.h"

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
  p->set_exec_id(make_exec_id(ctx.boot_id, h.pid, h.start_ns));
}

}  // namespace

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

Result<v1::Event> decode_record(std::span<const std::byte> rec, const DecodeContext& ctx) {
  auto hdr = read_record<ac_event_header>(rec, "header");
  if (!hdr) return std::unexpected(hdr.error());
  if (hdr->abi_version != AC_ABI_VERSION)
    return error(fmt::format("record ABI version {}, this build speaks {}", hdr->abi_version, AC_ABI_VERSION),
                 "the BPF object and the user-space binary come from different builds");
  if (hdr->size != rec.size())
    return error(fmt::format("record type {}: header says {} bytes, ring buffer gave {}", hdr->type, hdr->size,
                             rec.size()));

  v1::Event ev;
  ev.set_node(ctx.node);
  ev.set_ktime_ns(hdr->ktime_ns);
  ev.set_time_ns(static_cast<uint64_t>(static_cast<int64_t>(hdr->ktime_ns) + ctx.boot_to_real_ns));
  if (hdr->sandbox_id) ev.set_sandbox_id(sandbox_id_string(hdr->sandbox_id));
  ev.set_host_mode((hdr->flags & AC_F_HOST_MODE) != 0);
  auto* proc = ev.mutable_process();
  fill_process(proc, *hdr, ctx);

  switch (hdr->type) {
    case AC_EV_EXEC: {
      auto r = read_record<ac_exec_event>(rec, "exec");
      if (!r) return std::unexpected(r.error());
      auto* x = ev.mutable_exec();
      x->set_filename(fixed_string(r->filename, sizeof r->filename, r->filename_len));
      x->set_argc(r->argc);
      x->set_filename_truncated((hdr->flags & AC_F_FILENAME_TRUNCATED) != 0);
      proc->set_binary(x->filename());
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      size_t n = std::min<size_t>(r->argv_len, sizeof r->argv);
      size_t i = 0;
      while (i < n) {
        size_t len = strnlen(r->argv + i, n - i);
        proc->add_argv(std::string(r->argv + i, len));
        i += len + 1;
      }
      proc->set_argv_truncated((hdr->flags & AC_F_ARGV_TRUNCATED) != 0);
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
      } else {
        x->set_code(WEXITSTATUS(r->exit_code));
      }
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
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
      const char* en = r->ret < 0 ? strerrorname_np(-r->ret) : nullptr;
      f->set_error(en ? en : "");
      v->set_what(fmt::format("{} {} (lsm/{}, inode {}:{} {})", f->op(), f->path(), hook, r->dev >> 20,
                              r->dev & 0xfffff, r->ino));
      proc->set_comm(fixed_string(r->comm, sizeof r->comm, 0));
      break;
    }
    default:
      return error(fmt::format("unknown record type {} ({} bytes)", hdr->type, rec.size()));
  }
  return ev;
}

std::string to_json_line(const v1::Event& ev) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(ev, &out, o);
  return out;
}

std::string to_text_line(const v1::Event& ev) {
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
      return head + fmt::format("exec    {:>7} {} {}", p.pid(), ev.exec().filename(), argv);
    case v1::Event::kFork:
      return head + fmt::format("fork    {:>7} {} -> {}", p.pid(), p.comm(), ev.fork().child_pid());
    case v1::Event::kExit:
      if (ev.exit().signal())
        return head + fmt::format("exit    {:>7} {} signal {}", p.pid(), p.comm(), ev.exit().signal());
      return head + fmt::format("exit    {:>7} {} code {}", p.pid(), p.comm(), ev.exit().code());
    case v1::Event::kViolation:
      return head + fmt::format("DENY    {:>7} {} {}: {} [{}]", p.pid(), p.comm(), ev.violation().mechanism(),
                                ev.violation().what(), ev.violation().rule());
    case v1::Event::kLoss:
      return head + fmt::format("LOSS    {} events lost ({}, {})", ev.loss().count(), ev.loss().reason(),
                                ev.loss().where());
    default:
      return head + "event";
  }
}

}  // namespace agentcage::core
