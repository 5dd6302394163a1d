// SPDX-License-Identifier: Apache-2.0
// StoreWriter: batched appends off the producer's thread; a full queue is never silent.
#include "core/store/store_writer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

namespace agentcage::core {
namespace {

std::string fresh(const std::string& name) {
  std::string dir = "/tmp/agentcage-writer-test-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string p = dir + "/" + name;
  for (auto s : {"", "-wal", "-shm"}) std::filesystem::remove(p + s);
  return p;
}

v1::Event exec_event(int i) {
  v1::Event e;
  e.mutable_exec()->set_filename("/bin/" + std::to_string(i));
  return e;
}

TEST(StoreWriter, StoresEverythingInOrder) {
  auto path = fresh("w1.db");
  auto s = EventStore::open(path, {});
  ASSERT_TRUE(s.has_value());
  StoreWriter w(**s);
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(w.submit(exec_event(i)));
  w.flush();
  EXPECT_EQ(w.stats().stored, 5000u);
  EXPECT_LT(w.stats().batches, 5000u);  // batched
  int i = 0;
  ASSERT_TRUE((*s)->query({}, [&](const v1::Event& e) {
                  EXPECT_EQ(e.exec().filename(), "/bin/" + std::to_string(i++));
                  return true;
                }).has_value());
  EXPECT_EQ(i, 5000);
}

// Issue 11 item 7: a sandbox flooding file events spends its store budget; after that
// its file events are counted in store_budget Losses (placed before the next event that
// matters, and at its close), and every violation, exec and closing record is stored.
// Another sandbox is not charged. Nothing is unaccounted for.
TEST(StoreWriter, ASandboxPastItsBudgetHasItsFloodCountedAndEverythingThatMattersStored) {
  auto path = fresh("w-budget.db");
  auto s = EventStore::open(path, {});
  ASSERT_TRUE(s.has_value());
  StoreWriter w(**s);
  w.set_sandbox_budget(20000);
  auto file = [](const std::string& sb, int i) {
    v1::Event e;
    e.set_sandbox_id(sb);
    e.mutable_file()->set_op("open");
    e.mutable_file()->set_path("/nonexistent/" + std::to_string(i));
    e.mutable_file()->set_result(-2);
    return e;
  };
  const int n = 5000;
  int violations = 0;
  for (int i = 0; i < n; ++i) {
    w.submit(file("aaaaaaaaaaaaaaaa", i));
    if (i % 100 == 0) {
      v1::Event v;
      v.set_sandbox_id("aaaaaaaaaaaaaaaa");
      v.mutable_violation()->set_mechanism("landlock");
      v.mutable_violation()->set_what("open /secret/" + std::to_string(i));
      ASSERT_TRUE(w.submit(v));
      ++violations;
    }
    if (i % 1000 == 0) {
      auto x = exec_event(i);
      x.set_sandbox_id("aaaaaaaaaaaaaaaa");
      ASSERT_TRUE(w.submit(x));
    }
  }
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(w.submit(file("bbbbbbbbbbbbbbbb", i))) << "another sandbox is not charged";
  v1::Event close;
  close.set_sandbox_id("aaaaaaaaaaaaaaaa");
  close.mutable_sandbox()->set_phase("closed");
  ASSERT_TRUE(w.submit(close));
  w.flush();
  EXPECT_GT(w.stats().over_budget, 0u);
  uint64_t stored_files = 0, counted = 0, other = 0;
  int stored_violations = 0, execs = 0;
  bool closed = false, counted_after_close = false;
  ASSERT_TRUE((*s)->query({}, [&](const v1::Event& e) {
                  if (e.has_sandbox()) closed = true;
                  if (e.has_loss() && closed) counted_after_close = true;
                  if (e.sandbox_id() == "bbbbbbbbbbbbbbbb") ++other;
                  if (e.sandbox_id() != "aaaaaaaaaaaaaaaa") return true;
                  if (e.has_file()) ++stored_files;
                  if (e.has_violation()) ++stored_violations;
                  if (e.has_exec()) ++execs;
                  if (e.has_loss()) {
                    EXPECT_EQ(e.loss().reason(), "store_budget");
                    EXPECT_NE(e.loss().where().find("20000 bytes"), std::string::npos) << e.loss().where();
                    counted += e.loss().count();
                  }
                  return true;
                }).has_value());
  EXPECT_LT(stored_files, static_cast<uint64_t>(n) / 2) << "the budget did not hold";
  EXPECT_EQ(stored_files + counted, static_cast<uint64_t>(n)) << "file events unaccounted for";
  EXPECT_EQ(stored_violations, violations);
  EXPECT_EQ(execs, 5);
  EXPECT_EQ(other, 50u);
  EXPECT_FALSE(counted_after_close) << "the count goes before the sandbox's closing record";
}

TEST(StoreWriter, FullQueueBecomesALossEvent) {
  auto path = fresh("w2.db");
  auto s = EventStore::open(path, {});  // durable: slow enough for the queue to fill
  ASSERT_TRUE(s.has_value());
  StoreWriter w(**s, /*max_queue=*/8, /*max_batch=*/4);
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) accepted += w.submit(exec_event(i)) ? 1 : 0;
  w.flush();
  w.stop();
  auto st = w.stats();
  EXPECT_GT(st.dropped, 0u);
  EXPECT_EQ(st.stored, static_cast<uint64_t>(accepted));
  EXPECT_EQ(st.stored + st.dropped, 2000u);
  uint64_t lost = 0, execs = 0;
  ASSERT_TRUE((*s)->query({}, [&](const v1::Event& e) {
                  if (e.has_loss()) {
                    EXPECT_EQ(e.loss().reason(), "store_queue_full");
                    lost += e.loss().count();
                  } else {
                    ++execs;
                  }
                  return true;
                }).has_value());
  EXPECT_EQ(lost, st.dropped);  // every drop is on record
  EXPECT_EQ(execs, st.stored);
  EXPECT_TRUE((*s)->verify()->ok);
}

// A store that keeps failing (here: RLIMIT_FSIZE of one byte, so every write SQLite makes
// to its files fails, as on a read-only or broken disk) is tried again after a delay that
// doubles, not every 200 ms for ever; the events arriving meanwhile are not held in the
// queue until it overflows but reach live subscribers at once (on_failed); and when the
// store takes events again, the gap is on record with its count.
TEST(StoreWriter, AFailingStoreIsRetriedWithBackoffAndItsEventsStillReachSubscribers) {
  auto path = fresh("w3.db");
  auto s = EventStore::open(path, {});
  ASSERT_TRUE(s.has_value());
  std::atomic<uint64_t> told{0}, unstored{0};
  StoreWriter w(**s, /*max_queue=*/16, /*max_batch=*/4, {}, [&](const v1::Event& loss, const std::vector<v1::Event>& evs) {
    EXPECT_TRUE(loss.loss().reason() == "store_full" || loss.loss().reason() == "store_error") << loss.loss().reason();
    EXPECT_EQ(loss.loss().count(), evs.size());
    told += loss.loss().count();
    unstored += evs.size();
  });
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(w.submit(exec_event(i)));
  w.flush();
  ASSERT_EQ(w.stats().stored, 10u);

  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_sigxfsz = signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead
  rlimit tiny = old;
  tiny.rlim_cur = 1;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tiny), 0);
  // 2 s of events, one every 20 ms: more than the queue holds over the backoff.
  constexpr int kEvents = 100;
  int accepted = 0;
  for (int i = 0; i < kEvents; ++i) {
    accepted += w.submit(exec_event(100 + i)) ? 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  w.flush();
  auto st = w.stats();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, old_sigxfsz);
  EXPECT_FALSE(st.failing_reason.empty());
  // Tried at 0, 0.2, 0.6, 1.4 s (and maybe 3.0 s on a slow run); a fixed 200 ms retry
  // tries about ten times.
  EXPECT_GE(st.errors, 2u);
  EXPECT_LE(st.errors, 5u) << "the failing store was retried at a fixed interval";
  EXPECT_EQ(accepted, kEvents) << "events were held in the queue until it overflowed";
  EXPECT_EQ(st.queue_full, 0u);
  EXPECT_EQ(st.not_stored, static_cast<uint64_t>(kEvents));
  EXPECT_EQ(unstored.load(), static_cast<uint64_t>(kEvents)) << "subscribers did not see every event";
  EXPECT_EQ(told.load(), static_cast<uint64_t>(kEvents));

  // The limit is lifted: the next attempt (at most 5 s later) stores the gap's Loss.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!w.stats().failing_reason.empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(w.stats().failing_reason.empty()) << "the store never recovered";
  w.stop();
  uint64_t lost = 0, execs = 0;
  ASSERT_TRUE((*s)->query({}, [&](const v1::Event& e) {
                  if (e.has_loss()) lost += e.loss().count();
                  else ++execs;
                  return true;
                }).has_value());
  EXPECT_EQ(lost, static_cast<uint64_t>(kEvents));
  EXPECT_EQ(execs, 10u);
  EXPECT_TRUE((*s)->verify()->ok);
}

}  // namespace
}  // namespace agentcage::core
