// SPDX-License-Identifier: Apache-2.0
// Decouples event producers (the ring-buffer reader) from the store: a bounded queue and
// one writer thread that appends in batches (one transaction, one fsync per batch). A
// full queue never blocks the producer: the event is counted and, once there is room, a
// Loss event ("store_queue_full") records how many were dropped. Nothing is dropped
// silently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>
#include <mutex>
#include <thread>

#include "core/store/store.h"

namespace agentcage::core {

class StoreWriter {
 public:
  // on_stored, when set, runs on the writer thread after each batch is durably stored,
  // with the events as stored (seq assigned): live subscribers see what the store has.
  using StoredFn = std::function<void(const std::vector<v1::Event>&)>;
  explicit StoreWriter(EventStore& store, size_t max_queue = 65536, size_t max_batch = 4096, StoredFn on_stored = {});
  ~StoreWriter();  // stores what is queued, then stops
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Any thread. False when the queue is full (the event is counted as lost).
  bool submit(v1::Event ev);
  // Blocks until everything submitted before the call is stored (or failed).
  void flush();
  void stop();

  struct Stats {
    uint64_t stored = 0, dropped = 0, batches = 0, errors = 0;
  };
  Stats stats() const;

 private:
  void run();

  EventStore& store_;
  size_t max_queue_, max_batch_;
  const StoredFn on_stored_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_, done_cv_;
  std::deque<v1::Event> queue_;
  uint64_t submitted_ = 0, finished_ = 0;  // events handed in / taken care of (stored or failed)
  uint64_t pending_loss_ = 0;              // dropped, not yet recorded in a Loss event
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace agentcage::core
