// SPDX-License-Identifier: Apache-2.0
// Decouples event producers (the ring-buffer reader) from the store: a bounded queue and
// one writer thread that appends in batches (one transaction, one fsync per batch). A
// full queue never blocks the producer: the event is counted and, once there is room, a
// Loss event ("store_queue_full") records how many were dropped. Nothing is dropped
// silently. A store that refuses a batch is tried again after 200 ms, doubling to 5 s
// while it keeps failing; what arrives in between goes straight to on_failed (not into
// the queue), and the next stored batch carries the Loss of all of it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/store/store.h"

namespace agentcage::core {

class StoreWriter {
 public:
  // on_stored, when set, runs on the writer thread after each batch is durably stored,
  // with the events as stored (seq assigned): live subscribers see what the store has.
  using StoredFn = std::function<void(const std::vector<v1::Event>&)>;
  // on_failed, when set, runs on the writer thread when a batch could not be stored: a
  // Loss event (reason store_full or store_error, the count, why) and the events
  // themselves without seq, so live subscribers are told at once and are not blind while
  // the store cannot take anything.
  using FailedFn = std::function<void(const v1::Event& loss, const std::vector<v1::Event>& unstored)>;
  explicit StoreWriter(EventStore& store, size_t max_queue = 65536, size_t max_batch = 4096, StoredFn on_stored = {},
                       FailedFn on_failed = {});
  ~StoreWriter();  // stores what is queued, then stops
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Any thread. False when the queue is full (the event is counted as lost), or when the
  // event is of low value and its sandbox has spent its store budget (counted, and stored
  // as a store_budget Loss naming the count).
  bool submit(v1::Event ev);
  // A flood in one sandbox must not fill the disk nor bury what matters: once a sandbox's
  // events have taken `bytes` (serialized) in this store, its file and failed-syscall
  // events (what a loop makes) are counted instead of stored, one store_budget Loss per
  // second, before its next event of value, and at its close; violations, execs, forks,
  // exits, network, names, losses and its own records are always stored. 0: no budget.
  // The queue keeps the same order of value: low-value events take at most max_queue
  // places, the rest up to twice that.
  void set_sandbox_budget(uint64_t bytes);
  static constexpr uint64_t kDefaultSandboxBudget = 64ull << 20;
  // Blocks until everything submitted before the call is stored (or failed).
  void flush();
  void stop();

  struct Stats {
    uint64_t stored = 0, dropped = 0, batches = 0, errors = 0;
    uint64_t queue_full = 0;  // of dropped: refused because the queue was full
    uint64_t over_budget = 0; // of dropped: low-value events of a sandbox past its budget
    uint64_t not_stored = 0;  // of dropped: the store refused them (disk full, I/O error)
    // While the last append failed: "store_full" or "store_error", since when (wall ns),
    // and the store's message. Empty reason: the last append succeeded.
    std::string failing_reason, failing_message;
    uint64_t failing_since_ns = 0;
  };
  Stats stats() const;

 private:
  void run();

  EventStore& store_;
  size_t max_queue_, max_batch_;
  const StoredFn on_stored_;
  const FailedFn on_failed_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_, done_cv_;
  std::deque<v1::Event> queue_;
  uint64_t submitted_ = 0, finished_ = 0;  // events handed in / taken care of (stored or failed)
  uint64_t pending_loss_ = 0;              // dropped (queue full), not yet recorded in a Loss event
  uint64_t pending_failed_ = 0;            // refused by the store, not yet recorded in a Loss event
  std::string pending_failed_reason_;      // store_full or store_error (the first seen)
  bool stopping_ = false;
  Stats stats_;
  struct Budget {
    uint64_t bytes = 0;        // serialized bytes of this sandbox's events taken
    uint64_t unstored = 0;     // low-value events counted, not yet in a store_budget Loss
    uint64_t reported_ns = 0;  // when the last store_budget Loss was queued (steady ns)
  };
  uint64_t sandbox_budget_ = kDefaultSandboxBudget;
  std::unordered_map<std::string, Budget> budgets_;  // by sandbox id; a closing record ends it
  void queue_budget_loss(const std::string& sandbox_id, Budget& b);
  std::thread thread_;
};

}  // namespace agentcage::core
