// SPDX-License-Identifier: Apache-2.0
#include "core/events/event_pipeline.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "core/base/loss.h"
#include "core/events/attribution.h"

namespace agentcage::core {
namespace {

// Sandboxes come and go for the daemon's lifetime; the launcher cache forgets them all
// when it reaches this size instead of growing (a forgotten sandbox is asked again).
constexpr size_t kMaxLaunchers = 1024;

}  // namespace

EventPipeline::EventPipeline(PipelineOptions opts, Sink sink)
    : opts_(std::move(opts)), sink_(std::move(sink)), procs_(opts_.ctx.boot_id, opts_.proc_root) {}

Result<size_t> EventPipeline::seed() {
  if (opts_.proc_root.empty()) return 0;
  return procs_.seed_from_proc(opts_.proc_root);
}

void EventPipeline::handle(std::span<const std::byte> rec) {
  if (auto st = decode_record_into(rec, opts_.ctx, ev_); !st) {
    decode_errors_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("dropping undecodable kernel record: {}", st.error().message());
    sink_(loss_event("decode_error", 1, "kernel", opts_.ctx.node, opts_.loss_sandbox_id));
    return;
  }
  if (is_setup(ev_)) {
    setup_dropped_.fetch_add(1, std::memory_order_relaxed);
    if (ev_.has_exit()) procs_.apply(ev_);  // a launch that failed before exec: forget it
    return;
  }
  events_.fetch_add(1, std::memory_order_relaxed);
  procs_.apply(ev_);
  name_destination(ev_);
  // A failed-syscall record with another result than a refusal's comes only from an
  // audit-mode sandbox's would-deny set (AC_SB_AUDIT_SYSCALLS), which holds every call of
  // a conditionally denied syscall (each ioctl, clone, socket): only its violation, when
  // the enforced filter would refuse that call, is worth keeping.
  if (ev_.has_syscall()) {
    const std::string& e = ev_.syscall().error();
    if (e != "EPERM" && e != "EACCES" && e != "EAGAIN") {
      attribute(ev_);
      return;
    }
  }
  sink_(ev_);
  attribute(ev_);
  if (ev_.has_exec() && ev_.exec().killed() && opts_.kill_sandbox && !ev_.sandbox_id().empty())
    opts_.kill_sandbox(ev_.sandbox_id());
  if (ev_.has_file() && ev_.file().result() < 0) remember_fold(rec);
}

void EventPipeline::remember_fold(std::span<const std::byte> rec) {
  ac_file_event r;
  if (rec.size() != sizeof r) return;  // two-path records do not fold
  std::memcpy(&r, rec.data(), sizeof r);
  if (!(r.hdr.flags & AC_F_FOLDED)) return;
  // As large as ac_fold: entries there are deleted once idle, so the ones this forgets
  // first are the likeliest to have been swept already.
  constexpr size_t kMaxFolds = 16384;
  if (fold_last_.size() >= kMaxFolds) fold_last_.erase(fold_last_.begin());
  fold_last_.insert_or_assign(FoldId{r.hdr.tid, r.nr, r.result, r.fold_hash}, ev_);
}

void EventPipeline::folded(const ac_fold_key& key, const ac_fold_value& value) {
  if (!value.count) return;
  auto it = fold_last_.find(FoldId{key.tid, key.nr, key.result, key.hash});
  if (it == fold_last_.end()) {
    sink_(loss_event("folded_unmatched", value.count, "kernel", opts_.ctx.node, opts_.loss_sandbox_id));
    return;
  }
  v1::Event ev = std::move(it->second);
  fold_last_.erase(it);
  ev.set_ktime_ns(value.last_ns);
  ev.set_time_ns(value.last_ns + static_cast<uint64_t>(opts_.ctx.boot_to_real_ns));
  ev.mutable_file()->set_repeats(value.count - 1);
  events_.fetch_add(1, std::memory_order_relaxed);
  sink_(ev);
  attribute(ev);
}

void EventPipeline::shed(uint64_t sandbox_key, uint64_t count) {
  if (!count) return;
  shed_lost_.fetch_add(count, std::memory_order_relaxed);
  sink_(loss_event("ringbuf_shed", count, "kernel", opts_.ctx.node,
                   sandbox_key ? sandbox_id_string(sandbox_key) : opts_.loss_sandbox_id));
}

// The record reads as the name the process asked for, not only the CDN address it got.
void EventPipeline::name_destination(v1::Event& ev) {
  if (!opts_.dns_name || ev.sandbox_id().empty()) return;
  v1::NetOp* n = ev.has_net() && ev.net().learned() ? ev.mutable_net()
                 : ev.has_violation() && ev.violation().has_net() ? ev.mutable_violation()->mutable_net()
                                                                   : nullptr;
  // The name check's own records already carry the name asked on the wire.
  if (!n || !n->has_remote() || n->remote().family() == "unix" || !n->wire().empty()) return;
  std::string name = opts_.dns_name(ev.sandbox_id(), n->remote().address(), ev.ktime_ns());
  if (name.empty()) return;
  n->set_name(name);
  if (ev.has_violation()) ev.mutable_violation()->set_what(net_what(*n));
}

void EventPipeline::post(v1::Event ev) {
  // Far above what a reader that polls every 50 ms sees from one resolver; a bound, so a
  // stalled reader cannot grow memory without end.
  constexpr size_t kMaxPosted = 65536;
  std::lock_guard lk(posted_mu_);
  if (posted_.size() >= kMaxPosted) {
    ++posted_lost_;
    return;
  }
  posted_.push_back(std::move(ev));
}

void EventPipeline::flush_posted() {
  std::vector<v1::Event> batch;
  uint64_t lost = 0;
  {
    std::lock_guard lk(posted_mu_);
    batch.swap(posted_);
    lost = std::exchange(posted_lost_, 0);
  }
  if (lost) sink_(loss_event("posted_queue_full", lost, "agentcaged", opts_.ctx.node, opts_.loss_sandbox_id));
  for (auto& ev : batch) {
    if (ev.has_process() && ev.process().pid())
      if (const ProcessInfo* p = procs_.find(ev.process().pid())) {
        auto* out = ev.mutable_process();
        out->set_exec_id(p->exec_id);
        out->set_parent_exec_id(p->parent_exec_id);
        out->set_ppid(p->ppid);
        out->set_uid(p->uid);
        out->set_gid(p->gid);
        out->set_binary(p->binary);
        out->clear_argv();
        for (const auto& a : p->argv) out->add_argv(a);
        out->set_argv_truncated(p->argv_truncated);
        out->set_cwd(p->cwd);
        out->set_comm(p->comm);
        out->set_start_time_ns(p->start_time_ns);
      }
    events_.fetch_add(1, std::memory_order_relaxed);
    sink_(ev);
  }
}

// The sandbox's first process prepares its confinement between fork and execve (the
// in-process launcher builds the private view: mkdir, mount, symlink in a scratch root;
// a daemon client's child installs Landlock and seccomp, which with the shipped profiles
// leaves no record today): that is agentcage's doing, not the command's, and it is
// dropped here, on both paths alike. That process is the one
// child of the sandbox's launcher that enters the sandbox from outside it: born into it
// (clone3 CLONE_INTO_CGROUP: a fork record whose parent is not in the sandbox) or moved
// into it (agentcaged's PlaceProcess, the fork+hold fallback: no fork record, its first
// record names the launcher as ppid). Only the first such child per sandbox, only until
// its first exec: nothing the command runs is ever filtered.
bool EventPipeline::is_setup(v1::Event& ev) {
  if (ev.sandbox_id().empty() || !opts_.launcher) return false;
  auto* p = ev.mutable_process();
  // The launcher's child is recorded from its exec on, as the launcher's child.
  auto name_parent = [p](const std::string& launcher_exec_id) {
    if (p->parent_exec_id().empty()) p->set_parent_exec_id(launcher_exec_id);
  };
  if (ev.has_fork()) {
    // A setup process that forks is the sandbox's init (pid namespace): the process it
    // forks prepares the confinement and execs the command, so it is setup too, and the
    // command is recorded as the launcher's child, the init being agentcage's own.
    // (A fork record names its parent by pid alone; the table says which process that is.)
    const ProcessInfo* init = procs_.find(p->pid());
    if (auto it = setup_.find(p->pid()); it != setup_.end() && init && init->exec_id == it->second.exec_id) {
      std::string launcher = it->second.launcher_exec_id;
      if (launcher.empty()) launcher = init->parent_exec_id;
      setup_[ev.fork().child_pid()] = SetupProcess{ev.fork().child_exec_id(), launcher, true};
      return true;
    }
    // Recorded: the launcher's fork is where the sandbox's process tree starts.
    const ProcessInfo* parent = procs_.find(p->pid());
    if (parent && parent->sandbox_id == ev.sandbox_id()) return false;
    if (const LauncherInfo* l = starts_setup(ev.sandbox_id(), p->pid()))
      setup_[ev.fork().child_pid()] = SetupProcess{ev.fork().child_exec_id(), l->exec_id};
    return false;
  }
  if (!setup_.empty())
    if (auto it = setup_.find(p->pid()); it != setup_.end()) {
      if (it->second.exec_id == p->exec_id()) {
        bool exec = ev.has_exec();
        if (exec && it->second.under_init && !it->second.launcher_exec_id.empty())
          p->set_parent_exec_id(it->second.launcher_exec_id);
        else if (exec)
          name_parent(it->second.launcher_exec_id);
        // Its exec starts the command (recorded from here on); an exit ends a failed launch.
        if (exec || ev.has_exit()) setup_.erase(it);
        return !exec;
      }
      setup_.erase(it);  // a later process with that pid: the launch ended unseen
    }
  // A process already known is not entering the sandbox now.
  if (const ProcessInfo* known = procs_.find(p->pid()); known && known->exec_id == p->exec_id()) return false;
  const LauncherInfo* l = starts_setup(ev.sandbox_id(), p->ppid());
  if (!l) return false;
  if (ev.has_exec()) {  // no setup seen: its first record is the command's exec
    name_parent(l->exec_id);
    return false;
  }
  setup_[p->pid()] = SetupProcess{p->exec_id(), l->exec_id};
  return true;
}

// The sandbox's launcher, once per sandbox: when `parent_pid` is it, whose child this is.
const LauncherInfo* EventPipeline::starts_setup(const std::string& sandbox_id, uint32_t parent_pid) {
  auto it = launchers_.find(sandbox_id);
  if (it == launchers_.end()) {
    if (launchers_.size() >= kMaxLaunchers) launchers_.clear();
    it = launchers_.emplace(sandbox_id, Launcher{opts_.launcher(sandbox_id), false}).first;
  }
  Launcher& l = it->second;
  if (l.child_seen || l.info.pid == 0 || l.info.pid != parent_pid) return nullptr;
  l.child_seen = true;
  return &l.info;
}

// Denials the kernel does not report itself (Landlock, the mount view, seccomp's errno
// action, a seccomp kill) are attributed from the failure the monitor saw, with what the
// sandbox's compiled profile decided.
void EventPipeline::attribute(const v1::Event& ev) {
  if (!opts_.attribution || ev.sandbox_id().empty()) return;
  SandboxAttribution a = opts_.attribution(ev.sandbox_id());
  if (!a.decisions) return;
  if (auto v = attribute_event(ev, *a.decisions, a.net_reported)) sink_(*v);
}

uint64_t EventPipeline::ring_full(uint64_t total) {
  uint64_t prev = ring_lost_.load(std::memory_order_relaxed);
  if (total <= prev) return 0;
  ring_lost_.store(total, std::memory_order_relaxed);
  sink_(loss_event("ringbuf_full", total - prev, "kernel", opts_.ctx.node, opts_.loss_sandbox_id));
  return total - prev;
}

}  // namespace agentcage::core
