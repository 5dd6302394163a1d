// SPDX-License-Identifier: Apache-2.0
// StoreWriter: batched appends off the producer's thread; a full queue is never silent.
#include "core/store/store_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

}  // namespace
}  // namespace agentcage::core
