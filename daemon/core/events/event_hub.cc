// SPDX-License-Identifier: Apache-2.0
#include "core/events/event_hub.h"

#include <algorithm>

#include "core/base/loss.h"

namespace agentcage::core {

bool Subscription::offer(const std::shared_ptr<const v1::Event>& ev, size_t size) {
  std::function<void()> notify;
  {
    std::lock_guard lk(mu_);
    if (queue_.size() >= capacity_ || (max_bytes_ && bytes_ + size > max_bytes_)) {
      ++dropped_total_;
      ++dropped_unreported_;
      return false;
    }
    bytes_ += size;
    queue_.emplace_back(ev, size);
    notify = notify_;
  }
  if (notify) notify();
  return true;
}

std::optional<v1::Event> Subscription::pop() {
  std::lock_guard lk(mu_);
  if (dropped_unreported_) {
    v1::Event loss = loss_event("sink_queue_full", dropped_unreported_, name_);
    dropped_unreported_ = 0;
    return loss;
  }
  if (queue_.empty()) return std::nullopt;
  v1::Event ev = *queue_.front().first;
  bytes_ -= std::min(bytes_, queue_.front().second);
  queue_.pop_front();
  ++delivered_;
  return ev;
}

void Subscription::set_notify(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  notify_ = std::move(fn);
}

uint64_t Subscription::dropped() const {
  std::lock_guard lk(mu_);
  return dropped_total_;
}
uint64_t Subscription::delivered() const {
  std::lock_guard lk(mu_);
  return delivered_;
}
size_t Subscription::depth() const {
  std::lock_guard lk(mu_);
  return queue_.size();
}

std::shared_ptr<Subscription> EventHub::subscribe(std::string name, Subscription::Filter filter, size_t capacity,
                                                  size_t max_bytes) {
  auto sub = std::make_shared<Subscription>(std::move(name), capacity ? capacity : default_capacity_, std::move(filter),
                                            max_bytes);
  std::lock_guard lk(mu_);
  subs_.push_back(sub);
  return sub;
}

void EventHub::unsubscribe(const std::shared_ptr<Subscription>& sub) {
  std::lock_guard lk(mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

void EventHub::publish(const v1::Event& ev) {
  // Copy the list so a subscriber's notify callback may (un)subscribe without deadlock.
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lk(mu_);
    subs = subs_;
  }
  std::shared_ptr<const v1::Event> shared;  // one copy, made for the first taker
  size_t size = 0;
  for (auto& s : subs)
    if (!s->filter_ || s->filter_(ev)) {
      if (!shared) {
        shared = std::make_shared<const v1::Event>(ev);
        size = ev.ByteSizeLong();
      }
      s->offer(shared, size);
    }
}

std::vector<EventHub::SubscriberStats> EventHub::stats() const {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lk(mu_);
    subs = subs_;
  }
  std::vector<SubscriberStats> out;
  for (auto& s : subs) out.push_back({s->name(), s->depth(), s->delivered(), s->dropped()});
  return out;
}

size_t EventHub::size() const {
  std::lock_guard lk(mu_);
  return subs_.size();
}

}  // namespace agentcage::core
