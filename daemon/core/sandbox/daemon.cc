// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/daemon.h"

#include <map>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "core/base/clock.h"
#include "core/base/loss.h"
#include "core/confine/cgroup.h"

namespace agentcage::core {
Daemon::Daemon(DaemonOptions opts)
    : opts_(std::move(opts)), ctx_(DecodeContext::for_this_host()), hub_(opts_.subscriber_queue),
      pipeline_(make_pipeline()) {}

Daemon::~Daemon() { stop(); }

void Daemon::add_step(std::string name, std::function<Status()> up, std::function<void()> down) {
  if (!core_steps_added_) add_core_steps();
  steps_.push_back({std::move(name), std::move(up), std::move(down)});
}

void Daemon::add_core_steps() {
  core_steps_added_ = true;
  steps_.push_back({"kernel monitor",
                    [this]() -> Status {
                      auto m = BpfMonitor::start(opts_.monitor);
                      if (!m) return std::unexpected(m.error());
                      monitor_ = std::move(*m);
                      spdlog::info("bpf lsm: {}", monitor_->lsm_status());
                      if (opts_.host_mode) return monitor_->set_host_mode(true);
                      return {};
                    },
                    [this] {
                      // A clean stop has closed every sandbox (registry step): nothing is
                      // left to enforce. A start that failed before re-adopting leaves the
                      // records of a crashed daemon's sandboxes: their pins stay, or those
                      // sandboxes would run on unenforced.
                      if (monitor_ && !records_remain()) {
                        if (auto st = monitor_->unpin(); !st) spdlog::warn("{}", st.error().message());
                      } else if (monitor_) {
                        spdlog::warn("keeping the BPF pins: sandbox records remain in {} for the next agentcaged",
                                     opts_.state_dir);
                      }
                      monitor_.reset();
                    }});
  steps_.push_back({"sandbox registry",
                    [this]() -> Status {
                      std::string parent = opts_.cgroup_parent;
                      if (parent.empty()) {
                        auto root = cgroup2_mount();
                        if (!root) return std::unexpected(root.error());
                        parent = *root + "/agentcage";
                      }
                      if (auto st = lock_state_dir(); !st) return st;
                      registry_ = std::make_unique<SandboxRegistry>(parent, monitor_.get(), opts_.state_dir);
                      registry_->set_max_per_user(opts_.max_sandboxes_per_user);
                      // The sandboxes' resolvers report through the one pipeline.
                      registry_->set_event_poster([this](v1::Event ev) { pipeline_->post(std::move(ev)); });
                      // Every turn of a sandbox's life goes into the store with the events.
                      registry_->set_recorder([this](v1::Event ev, uint64_t ticks) {
                        ev.set_node(ctx_.node);
                        static const uint64_t ns_per_tick = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
                        if (ticks)
                          ev.mutable_process()->set_exec_id(make_exec_id(ctx_.boot_id, ev.process().pid(), ticks * ns_per_tick));
                        // A closing record goes after the sandbox's last kernel records and
                        // the counts of its folded failures: the reader delivers it once it
                        // has drained them (deliver_closing), so `run`'s relay, which ends at
                        // this record, has seen everything. Without a reader: at once.
                        const auto& phase = ev.sandbox().phase();
                        if (phase == "closed" || phase == "killed") {
                          std::unique_lock lk(closing_mu_);
                          if (reader_running_) {
                            closing_.push_back(std::move(ev));
                            lk.unlock();
                            monitor_->wake();
                            return;
                          }
                        }
                        emit(std::move(ev));
                      });
                      return {};
                    },
                    [this] { registry_.reset(); }});
  steps_.push_back({"audit store",
                    [this]() -> Status {
                      if (opts_.store_path.empty()) return {};
                      auto st = EventStore::open(opts_.store_path, opts_.store);
                      if (!st) return std::unexpected(st.error());
                      store_ = std::move(*st);
                      // Subscribers see events once stored, with their seq: what a live
                      // client sees is what the store (and the audit stream) has.
                      // While the store refuses (disk full, damage), live subscribers get a
                      // Loss naming why at once, then the events themselves without seq.
                      writer_ = std::make_unique<StoreWriter>(
                          *store_, 65536, 4096,
                          [this](const std::vector<v1::Event>& evs) {
                            for (const auto& ev : evs) hub_.publish(ev);
                            if (recording_failing_.exchange(false) && registry_) registry_->recording_failed(false, "");
                          },
                          [this](const v1::Event& loss, const std::vector<v1::Event>& unstored) {
                            hub_.publish(loss);
                            for (const auto& ev : unstored) hub_.publish(ev);
                            {
                              std::lock_guard lk(unstored_mu_);
                              if (unstored_fn_) unstored_fn_(loss, unstored);
                            }
                            // Profiles that must not run unrecorded are paused or stopped.
                            if (!recording_failing_.exchange(true) && registry_)
                              registry_->recording_failed(true, loss.loss().reason());
                          });
                      writer_->set_sandbox_budget(opts_.store_sandbox_budget);
                      spdlog::info("audit store {} (last seq {})", store_->path(), store_->last_seq());
                      return {};
                    },
                    [this] {
                      if (writer_) writer_->stop();  // stores what is queued
                      writer_.reset();
                      store_.reset();
                    }});
  steps_.push_back({"re-adopt sandboxes",
                    [this]() -> Status {
                      readopt_sandboxes();
                      return {};
                    },
                    {}});
  steps_.push_back({"event reader",
                    [this]() -> Status {
                      // Adopted maps: the counter is the previous daemon's; what it had
                      // already reported is not reported again.
                      kernel_lost_base_ = monitor_->adopted() ? load_kernel_lost() : monitor_->stats()[AC_STAT_RINGBUF_FULL];
                      reader_ = std::thread([this] { reader_loop(); });
                      reaper_ = std::thread([this] {
                        while (!stopping_.load()) {
                          registry_->reap_orphans();
                          std::this_thread::sleep_for(std::chrono::milliseconds(200));
                        }
                      });
                      return {};
                    },
                    [this] {
                      stopping_.store(true);
                      monitor_->wake();
                      if (reader_.joinable()) reader_.join();
                      if (reaper_.joinable()) reaper_.join();
                    }});
}

Status Daemon::start() {
  if (!core_steps_added_) add_core_steps();
  start_ns_ = wall_ns();
  for (; started_ < steps_.size(); ++started_) {
    auto& s = steps_[started_];
    spdlog::info("start: {}", s.name);
    if (auto st = s.up(); !st) {
      Error e = st.error();
      e.context = "start-up step '" + s.name + "': " + e.context;
      stop();
      return std::unexpected(e);
    }
  }
  return {};
}

void Daemon::stop() {
  while (started_ > 0) {
    auto& s = steps_[--started_];
    spdlog::info("stop: {}", s.name);
    if (s.down) s.down();
  }
}

void Daemon::reader_loop() {
  // Processes that already run (those of re-adopted sandboxes among them) are known from
  // /proc; later ones from their fork/exec records, which wait in the ring meanwhile.
  if (auto n = pipeline_->seed(); !n)
    spdlog::warn("process table: {}", n.error().message());
  else
    spdlog::debug("process table: {} processes from /proc", *n);
  auto fn = [this](std::span<const std::byte> rec) { handle(rec); };
  {
    std::lock_guard lk(closing_mu_);
    reader_running_ = true;
  }
  while (!stopping_.load(std::memory_order_acquire)) {
    uint64_t read_at = boot_clock_ns();
    auto r = monitor_->poll(50, fn);
    if (!r) spdlog::warn("{}", r.error().message());
    pipeline_->flush_posted();
    pipeline_->take_summaries(*monitor_, read_at, false);
    deliver_closing(fn);
    report_kernel_loss();
  }
  {
    std::lock_guard lk(closing_mu_);
    reader_running_ = false;  // from here the recorder emits at once
  }
  uint64_t read_at = boot_clock_ns();
  (void)monitor_->drain(fn);
  pipeline_->flush_posted();
  pipeline_->take_summaries(*monitor_, read_at, true);
  deliver_closing(fn);
  report_kernel_loss();
}

// Closing records queued by the recorder (see there), after what their sandboxes left:
// records committed before the close (a drain that starts after it), then every fold
// those records began.
void Daemon::deliver_closing(const BpfMonitor::RecordFn& fn) {
  std::vector<v1::Event> closing;
  {
    std::lock_guard lk(closing_mu_);
    closing.swap(closing_);
  }
  if (closing.empty()) return;
  uint64_t read_at = boot_clock_ns();
  (void)monitor_->drain(fn);
  pipeline_->flush_posted();
  pipeline_->take_summaries(*monitor_, read_at, true);
  for (auto& ev : closing) emit(std::move(ev));
}

// The one pipeline in-process runs use too: the same decode, process table, setup
// filtering and attribution, with what this daemon's registry knows of each sandbox.
std::unique_ptr<EventPipeline> Daemon::make_pipeline() {
  PipelineOptions o;
  o.ctx = ctx_;
  // A profiled sandbox's Landlock/seccomp denials are not reported by the kernel: they
  // are attributed from the failure seen, with what its launcher's confinement decided.
  o.attribution = [this](const std::string& id) -> SandboxAttribution {
    auto a = registry_ ? registry_->attribution(id) : nullptr;
    if (!a) return {};
    return {std::shared_ptr<const ConfineDecisions>(a, &a->decisions), a->net_reported};
  };
  o.dns_name = [this](const std::string& id, const std::string& address, uint64_t at) {
    return registry_ ? registry_->dns_name(id, address, at) : std::string();
  };
  o.kill_sandbox = [this](const std::string& id) {
    if (!registry_) return;
    auto s = registry_->get(id);
    if (!s || s->cgroup_path().empty()) return;
    if (auto st = kill_cgroup(s->cgroup_path()); !st)
      spdlog::error("sandbox {}: actions.exec: kill: {}", id, st.error().message());
  };
  // The client that created the sandbox places its held child in it (PlaceProcess).
  o.launcher = [this](const std::string& id) -> LauncherInfo {
    if (!registry_) return {};
    auto s = registry_->get(id);
    if (!s) return {};
    // A launched sandbox's first process is this daemon's child; its command is recorded
    // as the child of the client that asked for it.
    return {registry_->launcher_pid(id), owner_exec_id(id, s->owner_pid())};
  };
  return std::make_unique<EventPipeline>(std::move(o), [this](const v1::Event& ev) { emit(ev); });
}

void Daemon::handle(std::span<const std::byte> rec) { pipeline_->handle(rec); }

// The exec_id of sandbox `id`'s client, from the start time the registry noted when the
// client created it. The client is not tracked, and records are read in batches (up to
// the poll timeout late, more under load): a short run's client has often exited, been
// reaped and its sandbox closed by the time its child's first record is handled, so
// neither /proc nor the state record can be asked then. Empty when unknown: the process
// table then tries /proc.
std::string Daemon::owner_exec_id(const std::string& id, uint32_t owner_pid) const {
  uint64_t ticks = registry_ ? registry_->owner_start_ticks(id) : 0;
  if (!ticks) return {};
  static const uint64_t ns_per_tick = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  return make_exec_id(ctx_.boot_id, owner_pid, ticks * ns_per_tick);
}

std::optional<uid_t> Daemon::sandbox_owner(const std::string& id) {
  if (registry_)
    if (auto o = registry_->owner(id)) return o;
  if (!store_) return std::nullopt;
  {
    std::lock_guard lk(owners_mu_);
    if (auto it = owners_.find(id); it != owners_.end()) return it->second;
  }
  auto rec = recorded_sandbox(id);
  std::optional<uid_t> owner;
  if (rec) owner = rec->owner_uid();
  std::lock_guard lk(owners_mu_);
  // Unknown ids are remembered too (an id that is not on record now never will be: new
  // sandboxes are in the registry first); bounded against a caller probing many ids.
  if (owners_.size() > 65536) owners_.clear();
  owners_[id] = owner;
  return owner;
}

std::optional<v1::Sandbox> Daemon::recorded_sandbox(const std::string& id) const {
  if (!store_) return std::nullopt;
  StoreQuery q;
  q.sandbox_id = id;
  q.kinds = {"sandbox"};
  std::optional<v1::Sandbox> out;
  auto r = store_->query(q, [&](const v1::Event& ev) {
    out = ev.sandbox().sandbox();
    return true;
  });
  if (!r) spdlog::warn("sandbox {}: reading its record from the store: {}", id, r.error().message());
  return out;
}

std::vector<v1::Sandbox> Daemon::recorded_sandboxes(std::optional<uid_t> uid) const {
  std::vector<v1::Sandbox> out;
  if (!store_) return out;
  std::map<std::string, v1::Sandbox> last;
  StoreQuery q;
  q.kinds = {"sandbox"};
  auto r = store_->query(q, [&](const v1::Event& ev) {
    last[ev.sandbox_id()] = ev.sandbox().sandbox();
    return true;
  });
  if (!r) spdlog::warn("reading sandbox records from the store: {}", r.error().message());
  for (auto& [id, sb] : last) {
    if (registry_ && registry_->owner(id)) continue;  // the registry's view is the live one
    if (uid && sb.owner_uid() != *uid) continue;
    // Not in this daemon's registry: it ended before this daemon started, whatever its
    // last record said (a daemon killed with SIGKILL records no close).
    if (sb.state() != "closed") sb.set_state("closed (daemon restarted)");
    out.push_back(std::move(sb));
  }
  return out;
}

void Daemon::emit(v1::Event ev) {
  // The writer never blocks the reader: a full queue becomes a Loss event in the store.
  if (writer_)
    writer_->submit(std::move(ev));
  else
    hub_.publish(ev);
}

void Daemon::report_kernel_loss() {
  uint64_t now = monitor_->stats()[AC_STAT_RINGBUF_FULL];
  if (!pipeline_->ring_full(now > kernel_lost_base_ ? now - kernel_lost_base_ : 0)) return;
  save_kernel_lost(now);
}

// One daemon per state directory: a second one would adopt (and later remove) the pins
// and records of a daemon that still runs.
Status Daemon::lock_state_dir() {
  if (opts_.state_dir.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(opts_.state_dir, ec);
  if (ec) return sys_error("mkdir(" + opts_.state_dir + ")", ec.value());
  ::chmod(opts_.state_dir.c_str(), 0700);  // records name every sandbox's owner and command
  std::string lock = opts_.state_dir + "/lock";
  state_lock_.reset(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!state_lock_) return sys_error("open(" + lock + ")");
  if (::flock(state_lock_.get(), LOCK_EX | LOCK_NB) != 0)
    return sys_error("flock(" + lock + ")", errno,
                     errno == EWOULDBLOCK ? "another agentcaged runs with this state directory: stop it, or give "
                                            "this one its own --state-dir and --bpf-pin-dir"
                                          : "");
  return {};
}

// A daemon that starts after another died: every sandbox the previous one recorded is
// re-adopted (its policy held meanwhile: the pinned programs kept enforcing it) or
// killed. Either way the stream says so: a gap notice, since what the previous daemon
// had read from the kernel but not yet stored is lost, and a violation for each kill.
void Daemon::readopt_sandboxes() {
  auto r = registry_->readopt(monitor_ && monitor_->adopted());
  auto notice = [&](const std::string& id) {
    // count 0: unknown, records read but not stored by the previous daemon
    emit(loss_event("daemon_restart", 0, "agentcaged", ctx_.node, id));
  };
  for (const auto& id : r.adopted) notice(id);
  for (const auto& [id, why] : r.killed) {
    notice(id);
    v1::Event ev;
    ev.set_node(ctx_.node);
    ev.set_time_ns(wall_ns());
    ev.set_sandbox_id(id);
    auto* v = ev.mutable_violation();
    v->set_mechanism("agentcaged");
    v->set_action("kill");
    v->set_rule("fail closed: a sandbox the restarted daemon cannot re-adopt is killed");
    v->set_what("sandbox killed on daemon start: " + why);
    emit(std::move(ev));
  }
  if (!r.adopted.empty() || !r.killed.empty())
    spdlog::warn("previous agentcaged stopped uncleanly: {} sandbox(es) re-adopted, {} killed", r.adopted.size(),
                 r.killed.size());
  // The old build's programs enforced the sandboxes just killed; nothing needs them now.
  if (monitor_ && monitor_->has_stale_pins())
    if (auto st = monitor_->remove_stale_pins(); !st) spdlog::warn("{}", st.error().message());
}

bool Daemon::records_remain() const {
  if (opts_.state_dir.empty()) return false;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(opts_.state_dir, ec))
    if (e.path().extension() == ".pb") return true;
  return false;
}

// The ring-full counter lives in a pinned map and survives the daemon; the count already
// reported as Loss is kept beside the records, so a successor reports only what is new.
void Daemon::save_kernel_lost(uint64_t absolute) {
  if (opts_.state_dir.empty()) return;
  std::string p = opts_.state_dir + "/kernel_lost";
  (void)write_file(p, std::to_string(absolute));
}

uint64_t Daemon::load_kernel_lost() const {
  if (opts_.state_dir.empty()) return 0;
  auto t = read_file(opts_.state_dir + "/kernel_lost");
  if (!t) return 0;
  return std::strtoull(t->c_str(), nullptr, 10);
}

}  // namespace agentcage::core
