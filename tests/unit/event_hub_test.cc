// SPDX-License-Identifier: Apache-2.0
#include "core/events/event_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace agentcage::core {
namespace {

v1::Event exec_event(const std::string& sandbox, uint32_t pid) {
  v1::Event ev;
  ev.set_sandbox_id(sandbox);
  ev.mutable_process()->set_pid(pid);
  ev.mutable_exec()->set_filename("/bin/true");
  return ev;
}

TEST(EventHub, FiltersPerSubscriber) {
  EventHub hub(16);
  auto a = hub.subscribe("a", [](const v1::Event& e) { return e.sandbox_id() == "a"; });
  auto all = hub.subscribe("all", nullptr);
  hub.publish(exec_event("a", 1));
  hub.publish(exec_event("b", 2));
  ASSERT_TRUE(a->pop());
  EXPECT_FALSE(a->pop());
  EXPECT_TRUE(all->pop());
  EXPECT_TRUE(all->pop());
  EXPECT_FALSE(all->pop());
}

// A slow subscriber loses events to its own bounded queue, is told how many in-band, and
// neither blocks the publisher nor costs a fast subscriber anything.
TEST(EventHub, SlowSubscriberDropsAreCountedAndReported) {
  EventHub hub(4);
  auto slow = hub.subscribe("slow", nullptr);
  auto fast = hub.subscribe("fast", nullptr, 1000);
  for (uint32_t i = 0; i < 10; ++i) hub.publish(exec_event("s", i));
  EXPECT_EQ(slow->dropped(), 6u);
  EXPECT_EQ(fast->dropped(), 0u);
  auto first = slow->pop();
  ASSERT_TRUE(first && first->has_loss());
  EXPECT_EQ(first->loss().count(), 6u);
  EXPECT_EQ(first->loss().reason(), "sink_queue_full");
  EXPECT_EQ(first->loss().where(), "slow");
  int got = 0;
  while (auto ev = slow->pop()) {
    EXPECT_TRUE(ev->has_exec());
    EXPECT_EQ(ev->process().pid(), static_cast<uint32_t>(got));  // the oldest four, in order
    ++got;
  }
  EXPECT_EQ(got, 4);
  int fast_got = 0;
  while (fast->pop()) ++fast_got;
  EXPECT_EQ(fast_got, 10);
}

TEST(EventHub, NotifyFiresOnQueueAndCanBeCleared) {
  EventHub hub(8);
  auto s = hub.subscribe("n", nullptr);
  std::atomic<int> n{0};
  s->set_notify([&] { ++n; });
  hub.publish(exec_event("x", 1));
  EXPECT_EQ(n.load(), 1);
  s->set_notify(nullptr);
  hub.publish(exec_event("x", 2));
  EXPECT_EQ(n.load(), 1);
  hub.unsubscribe(s);
  EXPECT_EQ(hub.size(), 0u);
}

TEST(EventHub, ConcurrentPublishAndPop) {
  EventHub hub(1 << 20);
  auto s = hub.subscribe("c", nullptr);
  std::thread pub([&] {
    for (uint32_t i = 0; i < 20000; ++i) hub.publish(exec_event("c", i));
  });
  uint32_t next = 0;
  while (next < 20000) {
    if (auto ev = s->pop()) {
      ASSERT_EQ(ev->process().pid(), next);
      ++next;
    }
  }
  pub.join();
  EXPECT_EQ(s->dropped(), 0u);
}

}  // namespace
// A subscriber's unread events are bounded in bytes too (an unprivileged user's
// streams): past the bound it drops and is told, and what it reads frees room again.
TEST(EventHub, AByteBoundDropsPastItAndFreesWhatIsRead) {
  v1::Event ev;
  ev.mutable_file()->set_path(std::string(1000, 'x'));
  const size_t size = ev.ByteSizeLong();
  EventHub hub(1000);
  auto sub = hub.subscribe("s", nullptr, 0, 3 * size);
  for (int i = 0; i < 5; ++i) hub.publish(ev);
  EXPECT_EQ(sub->depth(), 3u);
  EXPECT_EQ(sub->dropped(), 2u);
  auto first = sub->pop();  // the Loss comes first
  ASSERT_TRUE(first && first->has_loss());
  EXPECT_EQ(first->loss().count(), 2u);
  ASSERT_TRUE(sub->pop());
  hub.publish(ev);  // one read: room for one more
  EXPECT_EQ(sub->depth(), 3u);
  EXPECT_EQ(sub->dropped(), 2u);
  hub.publish(ev);
  EXPECT_EQ(sub->dropped(), 3u);
}

}  // namespace agentcage::core
