// SPDX-License-Identifier: Apache-2.0
#include "core/store/store_writer.h"

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <chrono>
#include <cstring>

#include "core/base/clock.h"
#include "core/base/loss.h"

namespace agentcage::core {

StoreWriter::StoreWriter(EventStore& store, size_t max_queue, size_t max_batch, StoredFn on_stored, FailedFn on_failed)
    : store_(store),
      max_queue_(max_queue ? max_queue : 1),
      max_batch_(max_batch ? max_batch : 1),
      on_stored_(std::move(on_stored)),
      on_failed_(std::move(on_failed)) {
  thread_ = std::thread([this] { run(); });
}

StoreWriter::~StoreWriter() { stop(); }

namespace {

// What a loop makes at the highest rate, and tells least on its own: a file action, or a
// failed syscall, that is not a violation (a violation is its own event, always kept).
bool low_value(const v1::Event& ev) { return ev.has_file() || ev.has_syscall(); }

uint64_t steady_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace

void StoreWriter::set_sandbox_budget(uint64_t bytes) {
  std::lock_guard lk(mu_);
  sandbox_budget_ = bytes;
}

// Under mu_. Queued even when the queue is full: it is what accounts for the rest.
void StoreWriter::queue_budget_loss(const std::string& sandbox_id, Budget& b) {
  if (!b.unstored) return;
  v1::Event loss = loss_event("store_budget", b.unstored,
                              fmt::format("store: sandbox budget of {} bytes spent: its file and failed-syscall "
                                          "events are counted, not stored",
                                          sandbox_budget_),
                              {}, sandbox_id);
  b.unstored = 0;
  b.reported_ns = steady_ns();
  queue_.push_back(std::move(loss));
  ++submitted_;
}

bool StoreWriter::submit(v1::Event ev) {
  const bool low = low_value(ev);
  // Outside the lock: the reader thread submits every event, and other threads wait on mu_.
  const uint64_t size = ev.sandbox_id().empty() ? 0 : ev.ByteSizeLong();
  std::lock_guard lk(mu_);
  if (!stopping_ && sandbox_budget_ && !ev.sandbox_id().empty()) {
    auto& b = budgets_[ev.sandbox_id()];
    if (low && b.bytes >= sandbox_budget_) {
      ++b.unstored;
      ++stats_.dropped;
      ++stats_.over_budget;
      if (steady_ns() - b.reported_ns >= 1'000'000'000ull) queue_budget_loss(ev.sandbox_id(), b);
      cv_.notify_one();
      return false;
    }
    b.bytes += size;
    if (!low) queue_budget_loss(ev.sandbox_id(), b);  // the count goes before what follows it
    if (ev.has_sandbox() && (ev.sandbox().phase() == "closed" || ev.sandbox().phase() == "killed"))
      budgets_.erase(ev.sandbox_id());
  }
  if (stopping_ || queue_.size() >= (low ? max_queue_ : 2 * max_queue_)) {
    ++pending_loss_;
    ++stats_.dropped;
    ++stats_.queue_full;
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
    if (!stopping_)
      for (auto& [id, b] : budgets_) queue_budget_loss(id, b);
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

StoreWriter::Stats StoreWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

namespace {

// The store's Losses say "store" and, after a colon, what failed.
v1::Event store_loss(uint64_t count, const std::string& reason, const std::string& detail = {}) {
  return loss_event(reason, count, detail.empty() ? "store" : "store: " + detail);
}

}  // namespace

void StoreWriter::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<v1::Event> batch;
  // While the store fails, it is tried again after a delay that doubles up to
  // kMaxRetryDelay: a disk that stays read-only or broken is not hammered (and the log
  // not flooded) every 200 ms for ever. Events arriving meanwhile are not held back in the
  // queue until it overflows: each is counted as not stored for the failure's reason and
  // handed to on_failed at once, so live subscribers keep seeing them.
  constexpr auto kFirstRetryDelay = std::chrono::milliseconds(200);
  constexpr auto kMaxRetryDelay = std::chrono::seconds(5);
  std::chrono::milliseconds delay = kFirstRetryDelay;
  Clock::time_point next_attempt{};
  bool failing = false;
  std::string failing_reason, failing_detail;
  while (true) {
    uint64_t loss = 0, failed = 0;
    std::string failed_reason;
    bool attempt = true;
    {
      std::unique_lock lk(mu_);
      // While failing, only new events (or stopping) wake the writer before the deadline:
      // the pending Losses wait for the next attempt.
      auto ready = [&] {
        return stopping_ || !queue_.empty() || (!failing && (pending_loss_ > 0 || pending_failed_ > 0));
      };
      if (failing)
        cv_.wait_until(lk, next_attempt, ready);  // at the deadline: retry with the pending Losses alone
      else
        cv_.wait(lk, ready);
      if (queue_.empty() && pending_loss_ == 0 && (pending_failed_ == 0 || stopping_)) {
        if (stopping_) return;  // stopping and drained
        failing = false;        // nothing left to record (cannot happen: a failure leaves a Loss)
        continue;
      }
      attempt = !failing || stopping_ || Clock::now() >= next_attempt;
      batch.clear();
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (!attempt) {
        // Not tried: the store failed moments ago and is not due again yet.
        size_t n = batch.size();
        stats_.dropped += n;
        stats_.not_stored += n;
        pending_failed_ += n;
        finished_ += n;
        done_cv_.notify_all();
      } else {
        loss = std::exchange(pending_loss_, 0);
        failed = std::exchange(pending_failed_, 0);
        failed_reason = std::exchange(pending_failed_reason_, {});
      }
    }
    if (!attempt) {
      if (on_failed_ && !batch.empty()) on_failed_(store_loss(batch.size(), failing_reason, failing_detail), batch);
      continue;
    }
    size_t n = batch.size();
    // The Losses go in front: they happened before the events queued after them. Each
    // says why: a full queue, or the store refusing (the disk full, an I/O error).
    std::vector<v1::Event> front;
    if (failed > 0) front.push_back(store_loss(failed, failed_reason, "events not stored while it failed"));
    if (loss > 0) front.push_back(store_loss(loss, "store_queue_full"));
    batch.insert(batch.begin(), front.begin(), front.end());
    auto r = store_.append_batch(batch);
    if (r && on_stored_) on_stored_(batch);
    std::string reason;
    if (!r) reason = r.error().code == ENOSPC || r.error().code == EDQUOT ? "store_full" : "store_error";
    {
      std::lock_guard lk(mu_);
      if (r) {
        stats_.stored += n;
        ++stats_.batches;
        if (!stats_.failing_reason.empty())
          spdlog::info("event store {}: storing again after {}", store_.path(), stats_.failing_reason);
        stats_.failing_reason.clear();
        stats_.failing_message.clear();
        stats_.failing_since_ns = 0;
      } else {
        // The store refused: these events are lost to it; the next stored batch records a
        // Loss with this reason, and live subscribers hear of it now (on_failed).
        ++stats_.errors;
        stats_.dropped += n;
        stats_.not_stored += n;
        pending_failed_ += n + failed;
        pending_failed_reason_ = failed_reason.empty() ? reason : failed_reason;
        pending_loss_ += loss;
        if (stats_.failing_reason.empty()) {
          stats_.failing_since_ns = wall_ns();
          spdlog::error("event store {}: {} events not stored ({}): {}", store_.path(), n, reason, r.error().message());
        }
        stats_.failing_reason = reason;
        stats_.failing_message = r.error().message();
      }
      finished_ += n;
      done_cv_.notify_all();
    }
    if (r) {
      failing = false;
      delay = kFirstRetryDelay;
      continue;
    }
    const Error& e = r.error();  // one line: the hint is in the log and in status
    failing_reason = reason;
    failing_detail = e.code ? e.context + ": " + std::strerror(e.code) : e.context;
    if (on_failed_ && n > 0) {
      batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(front.size()));
      on_failed_(store_loss(n, reason, failing_detail), batch);
    }
    {
      std::lock_guard lk(mu_);
      if (stopping_ && queue_.empty()) return;  // nothing more will succeed now
    }
    next_attempt = Clock::now() + (failing ? delay = std::min<std::chrono::milliseconds>(delay * 2, kMaxRetryDelay) : delay);
    failing = true;
  }
}

}  // namespace agentcage::core
