// SPDX-License-Identifier: Apache-2.0
#include "core/audit/audit_client.h"

#include "core/base/text.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <random>

namespace agentcage::core {
namespace {

using Clock = std::chrono::steady_clock;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "unknown";
  return buf;
}

}  // namespace

std::string audit_ack_key(const std::string& endpoint) { return "audit.acked/" + endpoint; }

AuditClient::AuditClient(EventStore& store, std::unique_ptr<AuditConnector> connector, AuditClientOptions opts)
    : store_(store), connector_(std::move(connector)), opts_(std::move(opts)) {
  if (opts_.node.empty()) opts_.node = host_name();
  if (opts_.max_batch_events == 0) opts_.max_batch_events = 1;
  if (opts_.max_in_flight == 0) opts_.max_in_flight = 1;
  ack_key_ = audit_ack_key(connector_->endpoint());
  if (auto v = store_.kv_get(ack_key_); v && *v) {
    persisted_ = parse_u64(**v).value_or(0);
    stats_.shipped_through = persisted_;
  } else if (auto r = store_.kv_set(ack_key_, "0"); !r) {
    // "0" pins the whole store for age retention until the first acknowledgement, so a
    // collector that is down from the start does not lose events to age.
    spdlog::warn("audit stream: registering with the store's retention: {}", r.error().message());
  }
}

AuditClient::~AuditClient() { stop(); }

void AuditClient::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run_loop(std::nullopt, Clock::time_point::max()); });
}

void AuditClient::stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

AuditClientStats AuditClient::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void AuditClient::persist_ack(uint64_t shipped, bool force) {
  auto now = Clock::now();
  {
    std::lock_guard lk(mu_);
    stats_.shipped_through = std::max(stats_.shipped_through, shipped);
    // Throttled: the collector's hello tells a restarted client where to resume anyway;
    // this key is the retention pin and the operator's view of the backlog.
    if (shipped <= persisted_ || (!force && now - last_persist_ < std::chrono::milliseconds(200))) return;
    persisted_ = shipped;
    last_persist_ = now;
  }
  if (auto r = store_.kv_set(ack_key_, std::to_string(shipped)); !r)
    spdlog::warn("audit stream: saving the acknowledged position: {}", r.error().message());
}

std::optional<v1::Checkpoint> AuditClient::checkpoint_now() {
  auto cp = store_.signed_head(opts_.node);
  if (cp) return std::move(*cp);
  if (!sign_warned_)
    spdlog::warn("audit stream: sending no checkpoints (the collector cannot anchor this store): {}",
                 cp.error().message());
  sign_warned_ = true;
  return std::nullopt;
}

Status AuditClient::run_until_caught_up(Clock::time_point deadline) {
  auto target = store_.refresh_last_seq();
  if (!target) return std::unexpected(target.error());
  stop_ = false;
  caught_up_ = false;
  run_loop(*target, deadline);
  auto s = stats();
  // Only a collector that answered in this run counts: an old local ack alone does not
  // show that the collector (still) has the events.
  if (caught_up_ && s.shipped_through >= *target) return {};
  if (permanent_)
    return error(fmt::format("audit push to {}: rejected by the collector: {}", connector_->endpoint(), s.last_error));
  return error(fmt::format("audit push to {}: timed out: acknowledged through seq {} of {}", connector_->endpoint(),
                           s.shipped_through, *target),
               s.last_error.empty() ? "" : "last error: " + s.last_error);
}

void AuditClient::run_loop(std::optional<uint64_t> target, Clock::time_point deadline) {
  std::mt19937_64 rng{std::random_device{}()};
  auto backoff = opts_.backoff_min;
  while (!stop_) {
    uint64_t acked_before = stats().acked_seq;
    permanent_ = false;
    auto end = session(target, deadline);
    if (end == SessionEnd::caught_up) caught_up_ = true;
    if (end != SessionEnd::failed) return;
    if (Clock::now() >= deadline) return;
    // A one-shot push gives up on a rejection; the daemon keeps trying, slowly, so the
    // collector's operator can fix it without restarting nodes.
    if (permanent_ && target) return;
    if (stats().acked_seq > acked_before) backoff = opts_.backoff_min;  // it was working: retry soon
    if (permanent_) backoff = opts_.backoff_max * 6;
    // Jitter spreads the reconnects of many nodes after a collector restart.
    auto jitter = std::chrono::milliseconds(rng() % static_cast<uint64_t>(backoff.count() / 2 + 1));
    auto wait = std::min<Clock::duration>(backoff + jitter, deadline - Clock::now());
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, wait, [&] { return stop_.load(); });
    lk.unlock();
    backoff = std::min(backoff * 2, opts_.backoff_max);
  }
}

void AuditClient::tell_unstored(const v1::Event& loss, const std::vector<v1::Event>& events) {
  std::lock_guard lk(mu_);
  auto add = [&](const v1::Event& ev) {
    if (unstored_.size() >= kMaxUnstored) {
      if (stats_.unstored_dropped++ == 0)
        spdlog::warn("audit stream: more than {} unstored events waiting to be told; the rest are only counted "
                     "(the store's Loss records them when it recovers)",
                     kMaxUnstored);
      return;
    }
    unstored_.push_back(ev);
    if (unstored_.back().node().empty()) unstored_.back().set_node(opts_.node);
  };
  add(loss);
  for (const auto& ev : events)
    if (opts_.all_events || ev.has_violation() || ev.has_loss()) add(ev);
  cv_.notify_all();
}

AuditClient::SessionEnd AuditClient::session(std::optional<uint64_t> target, Clock::time_point deadline) {
  const std::string ep = connector_->endpoint();
  std::unique_ptr<AuditStream> stream = connector_->connect();
  {
    std::lock_guard lk(mu_);
    ++stats_.sessions;
  }

  // The reader thread only moves acks into `acks`; all decisions are made here.
  std::deque<v1::Ack> acks;
  bool ended = false;
  std::thread reader([&] {
    v1::Ack a;
    while (stream->read(&a)) {
      std::lock_guard lk(mu_);
      acks.push_back(a);
      cv_.notify_all();
    }
    std::lock_guard lk(mu_);
    ended = true;
    cv_.notify_all();
  });

  std::string failure;
  bool cancel_now = false;
  // `now`: our own decision (timeout, protocol error): cancel at once. Otherwise the stream
  // broke under us: finish() first waits for the collector's status, which says why.
  auto fail = [&](std::string why, bool now = true) {
    if (failure.empty()) failure = std::move(why);
    cancel_now = cancel_now || now;
  };
  auto finish = [&](SessionEnd how) {
    if (how == SessionEnd::caught_up) {
      // After the half-close the collector ends the stream; do not wait for ever on one
      // that does not.
      std::unique_lock lk(mu_);
      if (!cv_.wait_for(lk, std::chrono::seconds(5), [&] { return ended; })) {
        lk.unlock();
        stream->cancel();
      }
    } else if (how == SessionEnd::failed && !cancel_now) {
      std::unique_lock lk(mu_);
      if (!cv_.wait_for(lk, std::chrono::seconds(2), [&] { return ended; })) {
        lk.unlock();
        stream->cancel();
      }
    } else {
      stream->cancel();
    }
    reader.join();
    std::string st = stream->finish();
    std::lock_guard lk(mu_);
    stats_.connected = false;
    if (how == SessionEnd::failed) {
      // Rejections that a retry cannot fix: say so loudly, and back off for long.
      for (const char* code :
           {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED", "ALREADY_EXISTS"})
        if (st.rfind(code, 0) == 0) permanent_ = true;
      // The stream ended on its own (we had not cancelled): the collector went away or
      // refused; gRPC reports a vanished peer as CANCELLED or UNAVAILABLE.
      if (failure.empty()) failure = st.empty() ? "the collector closed the stream" : "the stream broke: " + st;
      else if (!st.empty() && st.find("CANCELLED") == std::string::npos) failure += " (" + st + ")";
      stats_.last_error = failure;
      if (permanent_)
        spdlog::error("audit stream to {}: rejected: {}; retrying in {} s", ep, failure,
                      opts_.backoff_max.count() * 6 / 1000);
      else
        spdlog::warn("audit stream to {}: {}; reconnecting", ep, failure);
    }
    return how;
  };

  // 1. Hello: where does the collector stand for this node and store?
  v1::EventBatch batch;
  batch.set_node(opts_.node);
  batch.set_store_id(store_.store_id());
  if (!stream->write(batch)) fail("sending the hello failed", false);
  uint64_t resume = 0;
  {
    std::unique_lock lk(mu_);
    auto until = std::min(deadline, Clock::now() + opts_.ack_timeout);
    cv_.wait_until(lk, until, [&] { return !acks.empty() || ended || stop_; });
    if (stop_) {
      lk.unlock();
      return finish(SessionEnd::stopped);
    }
    if (acks.empty()) {
      lk.unlock();
      if (!ended) fail("no answer to the hello");
      return finish(SessionEnd::failed);
    }
    const v1::Ack& h = acks.front();
    if (h.node() != opts_.node || h.store_id() != store_.store_id()) {
      failure = fmt::format("the hello ack names node '{}' store '{}', not this one", h.node(), h.store_id());
      lk.unlock();
      stream->cancel();
      return finish(SessionEnd::failed);
    }
    resume = h.acked_seq();
    acks.pop_front();
    // Only this process's own earlier acks are comparable (the persisted position also
    // covers events the filter skipped).
    if (resume < stats_.acked_seq)
      spdlog::warn("audit stream to {}: the collector has seq {} of node {} but acknowledged {} before (it lost "
                   "data?); re-sending from {}",
                   ep, resume, opts_.node, stats_.acked_seq, resume + 1);
    stats_.connected = true;
    stats_.acked_seq = resume;
  }
  spdlog::info("audit stream to {}: connected; resuming after seq {}", ep, resume);

  // The collector's position must be one this store reached, and what it holds there must
  // be this store's event: otherwise another client pushed a history under this node's
  // name (or this store was rolled back or replaced), and resuming after it would drop the
  // real events as "already shipped" while reporting success.
  if (resume > 0) {
    auto head = store_.refresh_last_seq();
    if (!head) {
      fail("reading the store: " + head.error().message());
      return finish(SessionEnd::failed);
    }
    if (resume > *head) {
      {
        std::lock_guard lk(mu_);
        permanent_ = true;
      }
      fail(fmt::format("the collector holds seq {} of node '{}' store {} but this store's head is seq {}: another "
                       "client pushed under this node's name (a forged history?) or this store was rolled back; "
                       "nothing shipped",
                       resume, opts_.node, store_.store_id(), *head));
      return finish(SessionEnd::failed);
    }
    // Resend the event at `resume`: the collector compares it with the one it holds and
    // ends the stream with ALREADY_EXISTS when they differ.
    StoreQuery one;
    one.from_seq = one.to_seq = resume;
    one.limit = 1;
    batch.Clear();
    batch.set_node(opts_.node);
    batch.set_store_id(store_.store_id());
    auto qr = store_.query(one, [&](const v1::Event& ev) {
      auto* e = batch.add_events();
      *e = ev;
      if (e->node().empty()) e->set_node(opts_.node);
      return false;
    });
    if (!qr) {
      fail("reading the store: " + qr.error().message());
      return finish(SessionEnd::failed);
    }
    if (batch.events_size() > 0) {  // retention may have removed it: nothing to compare
      if (!stream->write(batch)) {
        fail("sending the resume check failed", false);
        return finish(SessionEnd::failed);
      }
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, std::min(deadline, Clock::now() + opts_.ack_timeout),
                     [&] { return !acks.empty() || ended || stop_; });
      if (stop_) {
        lk.unlock();
        return finish(SessionEnd::stopped);
      }
      if (acks.empty()) {
        lk.unlock();
        if (!ended) fail("no answer to the resume check");
        return finish(SessionEnd::failed);
      }
      acks.pop_front();
    }
  }

  // 2. Pipelined batches: up to max_in_flight unacknowledged, each acked in order.
  uint64_t sent = resume, acked = resume;
  std::deque<uint64_t> in_flight;  // last seq of each unacknowledged batch
  auto last_progress = Clock::now();
  uint64_t cp_sent = 0;            // head seq of the last checkpoint sent on this stream
  std::optional<Clock::time_point> cp_time;  // none yet on this stream: the first batch carries one
  bool checkpoints = opts_.checkpoint_every.count() > 0;
  auto checkpoint_due = [&](uint64_t head, bool final) {
    return checkpoints && head > cp_sent && (final || !cp_time || Clock::now() - *cp_time >= opts_.checkpoint_every);
  };
  auto attach_checkpoint = [&](uint64_t head) {
    auto cp = checkpoint_now();
    if (!cp) {
      checkpoints = false;  // this store cannot be signed (no key): events still ship
      return false;
    }
    cp_sent = std::max(head, cp->seq());
    cp_time = Clock::now();
    *batch.mutable_checkpoint() = std::move(*cp);
    return true;
  };
  StoreQuery q;
  if (!opts_.all_events) q.kinds = {"violation", "loss"};  // a Loss is evidence too: always shipped
  while (true) {
    if (stop_) return finish(SessionEnd::stopped);
    {
      std::unique_lock lk(mu_);
      while (!acks.empty()) {
        uint64_t a = acks.front().acked_seq();
        stats_.anchored_seq = std::max(stats_.anchored_seq, acks.front().checkpoint_seq());
        acks.pop_front();
        if (a < acked) {
          lk.unlock();
          fail(fmt::format("the collector acknowledged seq {} after seq {}", a, acked));
          return finish(SessionEnd::failed);
        }
        if (a > acked) last_progress = Clock::now();
        acked = a;
        while (!in_flight.empty() && in_flight.front() <= acked) in_flight.pop_front();
      }
      stats_.acked_seq = acked;
      if (ended) {
        lk.unlock();
        return finish(SessionEnd::failed);
      }
    }
    if (!in_flight.empty()) persist_ack(acked, false);
    auto now = Clock::now();
    if (now >= deadline) {
      fail("deadline reached");
      return finish(SessionEnd::failed);
    }
    if (!in_flight.empty() && now - last_progress > opts_.ack_timeout) {
      fail(fmt::format("no acknowledgement for {} ms", opts_.ack_timeout.count()));
      return finish(SessionEnd::failed);
    }

    bool sent_now = false;
    if (in_flight.size() < opts_.max_in_flight) {
      auto head = store_.refresh_last_seq();
      if (!head) {
        fail("reading the store: " + head.error().message());
        return finish(SessionEnd::failed);
      }
      batch.Clear();
      batch.set_node(opts_.node);
      batch.set_store_id(store_.store_id());
      q.from_seq = sent + 1;
      q.to_seq = *head;
      q.limit = opts_.max_batch_events;
      size_t bytes = 0;
      Status qr = {};
      if (*head > sent)
        qr = store_.query(q, [&](const v1::Event& ev) {
          bytes += ev.ByteSizeLong();
          auto* e = batch.add_events();
          *e = ev;
          if (e->node().empty()) e->set_node(opts_.node);
          return bytes < opts_.max_batch_bytes;
        });
      if (!qr) {
        fail("reading the store: " + qr.error().message());
        return finish(SessionEnd::failed);
      }
      size_t unstored = 0;  // told at once, beside whatever the store has
      {
        std::lock_guard lk(mu_);
        while (!unstored_.empty() && static_cast<size_t>(batch.events_size()) + unstored < opts_.max_batch_events &&
               bytes < opts_.max_batch_bytes) {
          bytes += unstored_.front().ByteSizeLong();
          *batch.add_unstored() = std::move(unstored_.front());
          unstored_.pop_front();
          ++unstored;
        }
      }
      if (batch.events_size() > 0 || unstored > 0) {
        // A batch of unstored events alone is acked with where the collector stands.
        uint64_t last = batch.events_size() > 0 ? batch.events(batch.events_size() - 1).seq() : sent;
        if (checkpoint_due(*head, false)) attach_checkpoint(*head);
        if (in_flight.empty()) last_progress = Clock::now();  // the ack clock starts now
        if (!stream->write(batch)) {
          fail("sending a batch failed", false);
          return finish(SessionEnd::failed);
        }
        in_flight.push_back(last);
        sent = last;
        sent_now = true;
        std::lock_guard lk(mu_);
        stats_.sent_events += static_cast<uint64_t>(batch.events_size());
        stats_.unstored_sent += unstored;
        ++stats_.batches;
      } else if (in_flight.empty() && checkpoint_due(*head, target.has_value()) && attach_checkpoint(*head)) {
        // Nothing matching to send, but the store moved on: a checkpoint-only batch, so
        // the collector anchors the head even when no violation happened. Its ack names
        // the same acknowledged seq.
        if (!stream->write(batch)) {
          fail("sending a checkpoint failed", false);
          return finish(SessionEnd::failed);
        }
        last_progress = Clock::now();
        in_flight.push_back(acked);
        sent_now = true;
      } else if (in_flight.empty()) {
        // Nothing matching in (sent, head] and nothing outstanding: shipped up to head.
        persist_ack(std::max(acked, *head), target.has_value());
        if (target && std::max(acked, *head) >= *target) {
          // Half-close and let the collector end the stream: a clean goodbye.
          stream->writes_done();
          return finish(SessionEnd::caught_up);
        }
      }
    }
    if (!sent_now) {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, opts_.poll, [&] {
        return !acks.empty() || ended || stop_ || (!unstored_.empty() && in_flight.size() < opts_.max_in_flight);
      });
    }
  }
}

}  // namespace agentcage::core
