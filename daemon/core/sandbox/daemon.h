// SPDX-License-Identifier: Apache-2.0
// agentcaged's core, without gRPC: the kernel monitor, the sandbox registry, the event
// pipeline (reader -> decode -> store -> live fan-out) and the ordered start-up/teardown.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>
#include <thread>
#include <vector>

#include "core/kernel/bpf_monitor.h"
#include "core/events/decoder.h"
#include "core/events/event_hub.h"
#include "core/events/event_pipeline.h"
#include "core/base/paths.h"
#include "core/base/result.h"
#include "core/base/unique_fd.h"
#include "core/sandbox/sandbox_registry.h"
#include "core/store/store.h"
#include "core/store/store_writer.h"

namespace agentcage::core {

struct DaemonOptions {
  std::string socket_path = kDefaultSocket;
  std::string cgroup_parent;          // default: <cgroup2 mount>/agentcage
  bool host_mode = false;             // record every process on the host
  MonitorOptions monitor;
  size_t subscriber_queue = 65536;    // events buffered per live subscriber before drops
  // What one unprivileged user may hold of the daemon through Subscribe: this many live
  // streams (the next is RESOURCE_EXHAUSTED), each buffering at most this many bytes of
  // events it has not read (then it drops, told in-band). Root is not bounded here.
  size_t max_subscribers_per_user = 200;
  // Running sandboxes one non-root user may hold (each takes BPF map entries, a cgroup).
  size_t max_sandboxes_per_user = 64;
  // Store bytes one sandbox's events may take before its file and failed-syscall events
  // are counted instead of stored (StoreWriter::set_sandbox_budget; 0: none).
  uint64_t store_sandbox_budget = StoreWriter::kDefaultSandboxBudget;
  size_t user_subscriber_bytes = 1 << 20;
  // A non-root stream whose write has not completed for this long (the client reads
  // nothing) is closed; 0: never.
  std::chrono::milliseconds subscriber_stall_timeout{30000};
  // The tamper-evident audit store (the spool of the audit stream). Empty: no store;
  // then live subscribers get events straight from the reader, without seq numbers.
  std::string store_path = kDefaultStorePath;
  StoreOptions store;
  // Records of running sandboxes, for a restarted daemon to re-adopt them (empty: none
  // kept). With monitor.pin_dir set, enforcement and recording also outlive this process:
  // a daemon killed with SIGKILL leaves its sandboxes enforced and its successor adopts
  // them. Locked: two daemons never share one.
  std::string state_dir;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions opts);
  ~Daemon();

  // A named start-up step and its teardown. Steps run in order; teardown runs in reverse
  // for every step that started, also when a later step fails.
  void add_step(std::string name, std::function<Status()> up, std::function<void()> down = {});
  Status start();
  void stop();

  const DaemonOptions& options() const { return opts_; }
  EventHub& hub() { return hub_; }
  SandboxRegistry& registry() { return *registry_; }
  EventStore* store() { return store_.get(); }
  // The store writer's counters and whether it is failing now (empty without a store).
  std::optional<StoreWriter::Stats> store_stats() const {
    return writer_ ? std::optional<StoreWriter::Stats>(writer_->stats()) : std::nullopt;
  }
  // Told (on the store writer's thread) the Loss and the events of every batch the store
  // refused, besides live subscribers: the audit stream forwards them in-band. Set it to
  // an empty function before what it calls goes away.
  using UnstoredFn = StoreWriter::FailedFn;
  void set_unstored_listener(UnstoredFn fn) {
    std::lock_guard lk(unstored_mu_);
    unstored_fn_ = std::move(fn);
  }
  // Counters of parts the daemon does not own (the audit stream's client), for Status:
  // name, value pairs. Any thread; set it to an empty function before it goes away.
  using CountersFn = std::function<std::vector<std::pair<std::string, uint64_t>>()>;
  void set_extra_counters(CountersFn fn) {
    std::lock_guard lk(unstored_mu_);
    counters_fn_ = std::move(fn);
  }
  std::vector<std::pair<std::string, uint64_t>> extra_counters() const {
    std::lock_guard lk(unstored_mu_);
    return counters_fn_ ? counters_fn_() : std::vector<std::pair<std::string, uint64_t>>{};
  }
  BpfMonitor* monitor() { return monitor_.get(); }
  const DecodeContext& decode_context() const { return ctx_; }
  uint64_t start_time_ns() const { return start_ns_; }
  uint64_t events() const { return pipeline_->events(); }
  uint64_t decode_errors() const { return pipeline_->decode_errors(); }
  uint64_t kernel_lost() const { return pipeline_->ring_lost(); }

  // Sandboxes outlive this process in the store (SandboxChange events): a sandbox that
  // closed before this daemon started is still someone's. The owner of `id` from the
  // registry, else from the store's record; nullopt when neither knows it.
  std::optional<uid_t> sandbox_owner(const std::string& id);
  // The store's last record of `id` (nullopt: none).
  std::optional<v1::Sandbox> recorded_sandbox(const std::string& id) const;
  // Every sandbox on record in the store that the registry does not know (closed before
  // this daemon started), of `uid` when set.
  std::vector<v1::Sandbox> recorded_sandboxes(std::optional<uid_t> uid) const;

 private:
  struct Step {
    std::string name;
    std::function<Status()> up;
    std::function<void()> down;
  };
  void add_core_steps();
  std::unique_ptr<EventPipeline> make_pipeline();
  std::string owner_exec_id(const std::string& id, uint32_t owner_pid) const;
  void reader_loop();
  void handle(std::span<const std::byte> rec);
  void report_kernel_loss();
  void emit(v1::Event ev);
  Status lock_state_dir();
  void readopt_sandboxes();
  bool records_remain() const;
  void save_kernel_lost(uint64_t absolute);
  uint64_t load_kernel_lost() const;

  DaemonOptions opts_;
  DecodeContext ctx_;
  uint64_t start_ns_ = 0;
  std::vector<Step> steps_;
  size_t started_ = 0;
  bool core_steps_added_ = false;

  EventHub hub_;
  std::unique_ptr<BpfMonitor> monitor_;
  std::unique_ptr<SandboxRegistry> registry_;
  std::unique_ptr<EventStore> store_;
  std::unique_ptr<StoreWriter> writer_;  // reader -> writer thread -> store -> hub
  // Closing records waiting for the reader (set_recorder in add_core_steps).
  std::mutex closing_mu_;
  bool reader_running_ = false;     // guarded by closing_mu_
  std::vector<v1::Event> closing_;  // guarded by closing_mu_
  void deliver_closing(const BpfMonitor::RecordFn& fn);
  std::atomic<bool> recording_failing_{false};  // the writer's last append failed
  mutable std::mutex unstored_mu_;              // guards unstored_fn_ and counters_fn_
  UnstoredFn unstored_fn_;
  CountersFn counters_fn_;
  std::atomic<bool> stopping_{false};
  std::thread reader_;
  std::thread reaper_;
  // Reader thread only (its counters from any thread); after registry_, which it asks.
  std::unique_ptr<EventPipeline> pipeline_;
  uint64_t kernel_lost_base_ = 0;
  UniqueFd state_lock_;
  std::mutex owners_mu_;  // guards owners_
  std::unordered_map<std::string, std::optional<uid_t>> owners_;  // store lookups, by sandbox id
};

}  // namespace agentcage::core
