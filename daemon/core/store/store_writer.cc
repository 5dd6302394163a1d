// SPDX-License-Identifier: Apache-2.0
#include "core/store/store_writer.h"

#include <spdlog/spdlog.h>

namespace agentcage::core {

StoreWriter::StoreWriter(EventStore& store, size_t max_queue, size_t max_batch, StoredFn on_stored)
    : store_(store),
      max_queue_(max_queue ? max_queue : 1),
      max_batch_(max_batch ? max_batch : 1),
      on_stored_(std::move(on_stored)) {
  thread_ = std::thread([this] { run(); });
}

StoreWriter::~StoreWriter() { stop(); }

bool StoreWriter::submit(v1::Event ev) {
  std::lock_guard lk(mu_);
  if (stopping_ || queue_.size() >= max_queue_) {
    ++pending_loss_;
    ++stats_.dropped;
    return false;
  }
  queue_.push_back(std::move(ev));
  ++submitted_;
  cv_.notify_one();
  return true;
}

void StoreWriter::flush() {
  std::unique_lock lk(mu_);
  uint64_t target = submitted_;
  done_cv_.wait(lk, [&] { return finished_ >= target || !thread_.joinable(); });
}

void StoreWriter::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

StoreWriter::Stats StoreWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void StoreWriter::run() {
  std::vector<v1::Event> batch;
  while (true) {
    uint64_t loss = 0;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty() || pending_loss_ > 0; });
      if (queue_.empty() && pending_loss_ == 0) return;  // stopping and drained
      batch.clear();
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      loss = std::exchange(pending_loss_, 0);
    }
    size_t n = batch.size();
    if (loss > 0) {
      // The Loss goes in front: it happened before the events queued after the drop.
      v1::Event l;
      l.mutable_loss()->set_count(loss);
      l.mutable_loss()->set_reason("store_queue_full");
      l.mutable_loss()->set_where("store");
      batch.insert(batch.begin(), std::move(l));
    }
    auto r = store_.append_batch(batch);
    if (r && on_stored_) on_stored_(batch);
    {
      std::lock_guard lk(mu_);
      if (r) {
        stats_.stored += n;
        ++stats_.batches;
      } else {
        // The store refused (disk full, I/O error): these events are lost; count them so
        // the next successful batch records a Loss, and say why now.
        ++stats_.errors;
        stats_.dropped += n;
        pending_loss_ += n + loss;
        spdlog::error("event store {}: {} events not stored: {}", store_.path(), n, r.error().message());
      }
      finished_ += n;
      done_cv_.notify_all();
      if (!r && stopping_ && queue_.empty()) return;  // nothing more will succeed now
    }
    if (!r) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // do not spin on a failing disk
  }
}

}  // namespace agentcage::core
