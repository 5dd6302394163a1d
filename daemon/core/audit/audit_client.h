// SPDX-License-Identifier: Apache-2.0
// The node side of the remote audit stream (AuditSink.Push, see audit.proto): ships events
// from the local store (the spool) to a collector, batched and pipelined, and moves on
// only when the collector acknowledges. After an outage or a restart it asks the
// collector where it stands (the hello) and resumes right after, so nothing is lost and
// the collector's dedup makes the replays harmless.
//
// The transport is an interface: the core never includes gRPC headers. daemon/grpc/
// implements it over a gRPC channel (TLS, mTLS, or plaintext when asked). In a daemon:
//   auto conn = rpc::make_audit_connector({endpoint, insecure, ca, cert, key, server_name});
//   core::AuditClient client(store, std::move(*conn), {.all_events = false});
//   client.start();   // ships until client.stop(); stats() for status and counters
// `agentcage audit push` is the same client, standalone.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agentcage/v1/audit.pb.h"
#include "core/base/result.h"
#include "core/store/store.h"

namespace agentcage::core {

// One Push stream. read() and write() may run concurrently in two threads (one each);
// cancel() may be called from any thread and makes both return false.
class AuditStream {
 public:
  virtual ~AuditStream() = default;
  virtual bool write(const v1::EventBatch& batch) = 0;  // false: the stream is broken
  virtual bool read(v1::Ack* ack) = 0;                  // blocks; false: the stream ended
  virtual void writes_done() = 0;                       // no more batches (half-close)
  virtual void cancel() = 0;
  // After read() returned false: why the stream ended ("" when the collector closed it
  // cleanly), e.g. "UNAVAILABLE: failed to connect to all addresses".
  virtual std::string finish() = 0;
};

class AuditConnector {
 public:
  virtual ~AuditConnector() = default;
  virtual std::unique_ptr<AuditStream> connect() = 0;  // never null; failures show on the stream
  virtual std::string endpoint() const = 0;            // for logs and the ack key
};

struct AuditClientOptions {
  std::string node;                  // sender name; empty: this host's name
  bool all_events = false;           // false: violations (and losses) only
  size_t max_batch_events = 512;     // a batch is sent as soon as events exist: these bound it
  size_t max_batch_bytes = 1u << 20; // well under gRPC's 4 MiB message limit
  size_t max_in_flight = 8;          // batches sent and not yet acknowledged
  std::chrono::milliseconds poll{50};           // re-check the store when idle (other writers)
  std::chrono::milliseconds backoff_min{100};   // reconnect delay, doubling up to backoff_max
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds ack_timeout{15000}; // no ack for this long with batches out: reconnect
  // A signed head (Checkpoint) rides on the first batch of a session and then at most this
  // often, and alone when the store moved on but nothing matching was sent; a one-shot
  // push ends with one for the head it reached. 0: never.
  std::chrono::milliseconds checkpoint_every{10000};
};

struct AuditClientStats {
  uint64_t acked_seq = 0;      // highest seq the collector acknowledged
  uint64_t shipped_through = 0;  // every matching event up to here is acknowledged
  uint64_t sent_events = 0;    // including resends
  uint64_t batches = 0;
  uint64_t sessions = 0;       // streams opened (1 + reconnects)
  uint64_t anchored_seq = 0;   // the newest checkpoint the collector acknowledged keeping
  bool connected = false;
  std::string last_error;
  uint64_t unstored_sent = 0;     // events told in-band while the store failed (with their Losses)
  uint64_t unstored_dropped = 0;  // not told: the in-band queue was full (the stored Loss still counts them)
};

// kv key under which the store keeps an endpoint's acknowledged position (also the
// retention pin: StoreOptions::retention_pin_prefix).
std::string audit_ack_key(const std::string& endpoint);

class AuditClient {
 public:
  AuditClient(EventStore& store, std::unique_ptr<AuditConnector> connector, AuditClientOptions opts);
  ~AuditClient();  // stop()s
  AuditClient(const AuditClient&) = delete;
  AuditClient& operator=(const AuditClient&) = delete;

  // Ships continuously in a background thread until stop().
  void start();
  void stop();

  // Ships in the caller's thread until every matching event that is in the store when
  // this is called (and any appended meanwhile) is acknowledged, reconnecting through
  // outages, or until `deadline`. Error on timeout, naming the last failure.
  Status run_until_caught_up(std::chrono::steady_clock::time_point deadline);

  AuditClientStats stats() const;

  // While the store cannot take events (StoreWriter's on_failed): its Loss and the events
  // it refused (no seq), those matching this client's filter, sent at once on the live
  // stream as EventBatch.unstored (best effort, bounded: kMaxUnstored queued). Any thread.
  void tell_unstored(const v1::Event& loss, const std::vector<v1::Event>& events);
  static constexpr size_t kMaxUnstored = 4096;

 private:
  enum class SessionEnd { stopped, caught_up, failed };
  SessionEnd session(std::optional<uint64_t> target, std::chrono::steady_clock::time_point deadline);
  void run_loop(std::optional<uint64_t> target, std::chrono::steady_clock::time_point deadline);
  void persist_ack(uint64_t shipped, bool force);
  std::optional<v1::Checkpoint> checkpoint_now();

  EventStore& store_;
  std::unique_ptr<AuditConnector> connector_;
  AuditClientOptions opts_;
  std::string ack_key_;

  std::atomic<bool> stop_{false};
  std::thread thread_;

  mutable std::mutex mu_;  // guards stats_ and the session's ack state below
  std::condition_variable cv_;
  AuditClientStats stats_;
  std::chrono::steady_clock::time_point last_persist_{};
  uint64_t persisted_ = 0;
  bool permanent_ = false;
  bool caught_up_ = false;
  std::deque<v1::Event> unstored_;  // tell_unstored's queue, drained by the session
  bool sign_warned_ = false;  // signed_head failed once: said so, do not repeat per batch  // run_until_caught_up: a session reached the target  // the last session ended with a rejection (run_loop's thread only)
};

}  // namespace agentcage::core
