// SPDX-License-Identifier: Apache-2.0
// The collector side of AuditSink.Push, without gRPC: what a batch must look like, and
// the one writer thread that stores batches from every stream (group commit).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agentcage/v1/audit.pb.h"
#include "core/base/result.h"
#include "core/store/store.h"

namespace agentcage::core {

struct CollectorLimits {
  size_t max_batch_events = 10000;
  size_t max_name_len = 253;  // node names are host names
  size_t max_store_id_len = 64;
};

// What a stream has established so far: its node and store (empty before the first
// batch) and the highest seq received on it.
struct StreamState {
  std::string node;
  std::string store_id;
  uint64_t last_seq = 0;
};

// "" when `b` is acceptable on a stream in state `st`, else a message naming the field
// ("events[3].seq: 0: every event needs its store sequence number"). Pure.
std::string validate_batch(const v1::EventBatch& b, const StreamState& st, const CollectorLimits& lim = {});

// Owns every write to the collector store. Streams submit batches; the writer thread
// takes everything queued and stores it in one transaction (one fsync for many nodes),
// then calls each batch's `done` (from the writer thread).
class CollectorWriter {
 public:
  using Done = std::function<void(Result<IngestResult>)>;
  explicit CollectorWriter(EventStore& store, size_t max_group = 64);
  ~CollectorWriter();  // stop()s
  CollectorWriter(const CollectorWriter&) = delete;
  CollectorWriter& operator=(const CollectorWriter&) = delete;

  void submit(std::string node, std::string store_id, std::vector<v1::Event> events,
              std::optional<v1::Checkpoint> checkpoint, Done done);
  // Stores what is queued, then ends the thread; later submits fail at once.
  void stop();

  struct Stats {
    uint64_t batches = 0, inserted = 0, duplicates = 0, conflicts = 0, commits = 0, failures = 0;
  };
  Stats stats() const;

 private:
  struct Job {
    std::string node, store_id;
    std::vector<v1::Event> events;
    std::optional<v1::Checkpoint> checkpoint;
    Done done;
  };
  void run();

  EventStore& store_;
  size_t max_group_;
  mutable std::mutex mu_;  // guards queue_, stopping_, stats_
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace agentcage::core
