// SPDX-License-Identifier: Apache-2.0
// Live fan-out of events to subscribers (gRPC Subscribe streams, sinks). publish() never
// blocks: each subscriber has a bounded queue, and a full queue drops the event for that
// subscriber only, counts it, and tells the subscriber in-band (a Loss event) before its
// next event. A slow subscriber therefore never slows the kernel reader or anyone else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/event.pb.h"

namespace agentcage::core {

class Subscription {
 public:
  using Filter = std::function<bool(const v1::Event&)>;
  // capacity: events; max_bytes: their serialized size together (0: no byte bound), so a
  // subscriber that never reads holds a known amount of memory whatever the events weigh.
  Subscription(std::string name, size_t capacity, Filter filter, size_t max_bytes = 0)
      : name_(std::move(name)), capacity_(capacity), max_bytes_(max_bytes), filter_(std::move(filter)) {}

  // The next event, or nothing when the queue is empty. When events were dropped since
  // the last pop, a Loss event (reason sink_queue_full) comes first.
  std::optional<v1::Event> pop();
  // Called from the publisher's thread after an event was queued. The callee must not
  // block; it typically schedules a write. Cleared with set_notify(nullptr).
  void set_notify(std::function<void()> fn);

  const std::string& name() const { return name_; }
  uint64_t dropped() const;
  uint64_t delivered() const;
  size_t depth() const;

 private:
  friend class EventHub;
  // false: dropped (full). The event is shared with every other subscriber it was
  // offered to: 200 streams that read nothing hold one copy of what they wait for, not 200.
  bool offer(const std::shared_ptr<const v1::Event>& ev, size_t size);

  const std::string name_;
  const size_t capacity_;
  const size_t max_bytes_;
  const Filter filter_;
  size_t bytes_ = 0;  // serialized size of queue_ (guarded by mu_)
  mutable std::mutex mu_;  // guards everything below
  std::deque<std::pair<std::shared_ptr<const v1::Event>, size_t>> queue_;  // event, serialized size
  std::function<void()> notify_;
  uint64_t dropped_total_ = 0;
  uint64_t dropped_unreported_ = 0;
  uint64_t delivered_ = 0;
};

class EventHub {
 public:
  explicit EventHub(size_t default_capacity = 65536) : default_capacity_(default_capacity) {}

  std::shared_ptr<Subscription> subscribe(std::string name, Subscription::Filter filter, size_t capacity = 0,
                                          size_t max_bytes = 0);
  void unsubscribe(const std::shared_ptr<Subscription>& sub);
  // Offers ev to every subscriber whose filter accepts it. Thread-safe; never blocks on
  // a subscriber.
  void publish(const v1::Event& ev);

  struct SubscriberStats {
    std::string name;
    size_t depth;
    uint64_t delivered;
    uint64_t dropped;
  };
  std::vector<SubscriberStats> stats() const;
  size_t size() const;

 private:
  const size_t default_capacity_;
  mutable std::mutex mu_;  // guards subs_ (the list, not the queues)
  std::vector<std::shared_ptr<Subscription>> subs_;
};

}  // namespace agentcage::core
