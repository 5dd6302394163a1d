// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/daemon.h"

#include "core/events/attribution.h"

#include <time.h>

#include <spdlog/spdlog.h>

#include <chrono>

#include "core/confine/cgroup.h"

namespace agentcage::core {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Daemon::Daemon(DaemonOptions opts)
    : opts_(std::move(opts)), ctx_(DecodeContext::for_this_host()), hub_(opts_.subscriber_queue) {}

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
                    [this] { monitor_.reset(); }});
  steps_.push_back({"sandbox registry",
                    [this]() -> Status {
                      std::string parent = opts_.cgroup_parent;
                      if (parent.empty()) {
                        auto root = cgroup2_mount();
                        if (!root) return std::unexpected(root.error());
                        parent = *root + "/agentcage";
                      }
                      registry_ = std::make_unique<SandboxRegistry>(parent, monitor_.get());
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
                      writer_ = std::make_unique<StoreWriter>(*store_, 65536, 4096, [this](const std::vector<v1::Event>& evs) {
                        for (const auto& ev : evs) hub_.publish(ev);
                      });
                      spdlog::info("audit store {} (last seq {})", store_->path(), store_->last_seq());
                      return {};
                    },
                    [this] {
                      if (writer_) writer_->stop();  // stores what is queued
                      writer_.reset();
                      store_.reset();
                    }});
  steps_.push_back({"event reader",
                    [this]() -> Status {
                      kernel_lost_base_ = monitor_->stats()[AC_STAT_RINGBUF_FULL];
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
                      if (reader_.joinable()) reader_.join();
                      if (reaper_.joinable()) reaper_.join();
                    }});
}

Status Daemon::start() {
  if (!core_steps_added_) add_core_steps();
  start_ns_ = now_ns();
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
  auto fn = [this](std::span<const std::byte> rec) { handle(rec); };
  while (!stopping_.load(std::memory_order_acquire)) {
    auto r = monitor_->poll(50, fn);
    if (!r) spdlog::warn("{}", r.error().message());
    report_kernel_loss();
  }
  (void)monitor_->drain(fn);
  report_kernel_loss();
}

void Daemon::handle(std::span<const std::byte> rec) {
  auto ev = decode_record(rec, ctx_);
  if (!ev) {
    ++decode_errors_;
    spdlog::warn("undecodable kernel record: {}", ev.error().message());
    v1::Event loss;
    loss.set_node(ctx_.node);
    loss.set_time_ns(now_ns());
    loss.mutable_loss()->set_count(1);
    loss.mutable_loss()->set_reason("decode_error");
    loss.mutable_loss()->set_where("kernel");
    emit(std::move(loss));
    return;
  }
  ++events_;
  // A profiled sandbox's Landlock/seccomp denials are not reported by the kernel: they
  // are attributed from the failure seen, with what its launcher's confinement decided.
  std::shared_ptr<const SandboxRegistry::Attribution> attr;
  if (!ev->sandbox_id().empty() && registry_) attr = registry_->attribution(ev->sandbox_id());
  std::optional<v1::Event> violation;
  if (attr) violation = attribute_event(*ev, attr->decisions, attr->net_reported);
  emit(std::move(*ev));
  if (violation) emit(std::move(*violation));
}

void Daemon::emit(v1::Event ev) {
  // The writer never blocks the reader: a full queue becomes a Loss event in the store.
  if (writer_)
    writer_->submit(std::move(ev));
  else
    hub_.publish(ev);
}

void Daemon::report_kernel_loss() {
  uint64_t lost = monitor_->stats()[AC_STAT_RINGBUF_FULL] - kernel_lost_base_;
  uint64_t prev = kernel_lost_.load();
  if (lost <= prev) return;
  kernel_lost_.store(lost);
  v1::Event loss;
  loss.set_node(ctx_.node);
  loss.set_time_ns(now_ns());
  loss.mutable_loss()->set_count(lost - prev);
  loss.mutable_loss()->set_reason("ringbuf_full");
  loss.mutable_loss()->set_where("kernel");
  emit(std::move(loss));
}

}  // namespace agentcage::core
