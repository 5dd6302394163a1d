// SPDX-License-Identifier: Apache-2.0
#include "core/audit/audit_collector.h"

#include "core/base/text.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace agentcage::core {
namespace {

// Names end up in logs and queries: printable ASCII only, no spaces.
bool printable_name(const std::string& s) {
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

}  // namespace

std::string validate_batch(const v1::EventBatch& b, const StreamState& st, const CollectorLimits& lim) {
  if (b.node().empty()) return "node: empty: every batch names the sending node";
  if (b.node().size() > lim.max_name_len)
    return fmt::format("node: {} bytes, more than {}", b.node().size(), lim.max_name_len);
  if (!printable_name(b.node())) return "node: must be printable ASCII without spaces";
  if (b.store_id().empty()) return "store_id: empty: every batch names the node's store";
  if (b.store_id().size() > lim.max_store_id_len)
    return fmt::format("store_id: {} bytes, more than {}", b.store_id().size(), lim.max_store_id_len);
  if (!printable_name(b.store_id())) return "store_id: must be printable ASCII without spaces";
  if (!st.node.empty() && (b.node() != st.node || b.store_id() != st.store_id))
    return fmt::format("node: '{}' store '{}' on a stream opened by '{}' store '{}': one stream, one node", b.node(),
                       b.store_id(), st.node, st.store_id);
  if (static_cast<size_t>(b.events_size()) > lim.max_batch_events)
    return fmt::format("events: {} in one batch, more than {}", b.events_size(), lim.max_batch_events);
  if (b.has_checkpoint()) {
    const auto& c = b.checkpoint();
    if (c.store_id() != b.store_id())
      return fmt::format("checkpoint.store_id: '{}' in a batch of store '{}'", c.store_id(), b.store_id());
    if (!c.node().empty() && c.node() != b.node())
      return fmt::format("checkpoint.node: '{}' in a batch of node '{}'", c.node(), b.node());
    if (c.seq() == 0 || c.seq() > kMaxSeq) return fmt::format("checkpoint.seq: {} is not a store sequence number", c.seq());
    if (c.hash().size() != kHashBytes) return fmt::format("checkpoint.hash: {} bytes, not {}", c.hash().size(), kHashBytes);
    if (c.key_id().size() > 64 || !printable_name(c.key_id())) return "checkpoint.key_id: at most 64 printable bytes";
    if (c.key_id().empty() != c.mac().empty()) return "checkpoint.mac: a key id and a mac go together";
    if (c.mac().size() > 64) return fmt::format("checkpoint.mac: {} bytes, more than 64", c.mac().size());
    if (c.retention().size() > 128) return "checkpoint.retention: more than 128 bytes";
  }
  uint64_t prev = st.last_seq;
  for (int i = 0; i < b.events_size(); ++i) {
    const auto& ev = b.events(i);
    if (ev.seq() == 0) return fmt::format("events[{}].seq: 0: every event needs its store sequence number", i);
    if (ev.seq() > kMaxSeq) return fmt::format("events[{}].seq: {} is beyond the largest store sequence number {}", i, ev.seq(), kMaxSeq);
    if (ev.seq() <= prev)
      return fmt::format("events[{}].seq: {} after {}: seqs must increase along a stream", i, ev.seq(), prev);
    prev = ev.seq();
  }
  if (static_cast<size_t>(b.unstored_size()) > lim.max_batch_events)
    return fmt::format("unstored: {} in one batch, more than {}", b.unstored_size(), lim.max_batch_events);
  for (int i = 0; i < b.unstored_size(); ++i)
    if (b.unstored(i).seq() != 0)
      return fmt::format("unstored[{}].seq: {}: an event the node could not store has no seq", i, b.unstored(i).seq());
  return {};
}

CollectorWriter::CollectorWriter(EventStore& store, size_t max_group)
    : store_(store), max_group_(max_group ? max_group : 1), thread_([this] { run(); }) {}

CollectorWriter::~CollectorWriter() { stop(); }

void CollectorWriter::submit(std::string node, std::string store_id, std::vector<v1::Event> events,
                             std::optional<v1::Checkpoint> checkpoint, Done done) {
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      queue_.push_back(
          Job{std::move(node), std::move(store_id), std::move(events), std::move(checkpoint), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(error("collector is shutting down"));
}

void CollectorWriter::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

CollectorWriter::Stats CollectorWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void CollectorWriter::run() {
  while (true) {
    std::vector<Job> jobs;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && jobs.size() < max_group_) {
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<IngestBatch> batches;
    batches.reserve(jobs.size());
    for (auto& j : jobs)
      batches.push_back(IngestBatch{j.node, j.store_id, &j.events, j.checkpoint ? &*j.checkpoint : nullptr});
    auto r = store_.ingest(batches);
    {
      std::lock_guard lk(mu_);
      ++stats_.commits;
      stats_.batches += jobs.size();
      if (r) {
        for (auto& x : *r) {
          stats_.inserted += x.inserted;
          stats_.duplicates += x.duplicates;
          stats_.conflicts += x.conflicts;
        }
      } else {
        ++stats_.failures;
      }
    }
    if (!r) spdlog::error("collector: storing {} batches: {}", jobs.size(), r.error().message());
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (r) jobs[i].done((*r)[i]);
      else jobs[i].done(std::unexpected(r.error()));
    }
  }
}

}  // namespace agentcage::core
