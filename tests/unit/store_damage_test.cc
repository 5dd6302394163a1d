// SPDX-License-Identifier: Apache-2.0
// A damaged store is refused at open, not papered over (issue 15 item 4: the fault
// review's cases that started "healthy" and then stored nothing, or silently restarted
// the chain under rows it already had), and another process's read-write connection
// does not take the live WAL away from the writer.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/store/store.h"
#include "support/store_tamper.h"

namespace agentcage::core {
namespace {

std::string fresh_store(int n) {
  static int k = 0;
  std::string dir = fmt::format("/tmp/agentcage-damage-test-{}-{}", getpid(), ++k);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string db = dir + "/audit.db";
  auto s = EventStore::open(db, {});
  EXPECT_TRUE(s.has_value()) << s.error().message();
  std::vector<v1::Event> evs;
  for (int i = 1; i <= n; ++i) {
    v1::Event ev;
    ev.set_time_ns(1'700'000'000'000'000'000ull + static_cast<uint64_t>(i));
    ev.set_sandbox_id("sb1");
    ev.mutable_exec()->set_filename("/bin/echo");
    evs.push_back(ev);
  }
  EXPECT_TRUE((*s)->append_batch(evs).has_value());
  return db;
}

std::string refusal(const std::string& db) {
  auto s = EventStore::open(db, {});
  return s ? std::string() : s.error().message();
}

TEST(StoreDamage, LostMetaRowsAreRefusedNotReplacedByAFreshHead) {
  for (const char* sql : {"DELETE FROM meta", "DELETE FROM meta WHERE key IN ('head_seq', 'head_hash')",
                          "DELETE FROM meta WHERE key = 'store_id'"}) {
    auto db = fresh_store(50);
    testing::StoreFile(db).exec(sql);
    auto why = refusal(db);
    EXPECT_NE(why.find("is missing but 50 events remain"), std::string::npos) << sql << ": " << why;
    EXPECT_NE(why.find("move it aside"), std::string::npos) << why;
  }
}

TEST(StoreDamage, ADroppedEventsTableIsRefusedNotRecreatedEmpty) {
  auto db = fresh_store(20);
  testing::StoreFile(db).exec("DROP TABLE events");
  auto why = refusal(db);
  EXPECT_NE(why.find("the events table is missing"), std::string::npos) << why;
}

TEST(StoreDamage, RowsPastTheRecordedHeadAreRefused) {
  auto db = fresh_store(20);
  testing::StoreFile(db).exec("UPDATE meta SET value = '5' WHERE key = 'head_seq'");
  auto why = refusal(db);
  EXPECT_NE(why.find("events run to seq 20 past the recorded head '5'"), std::string::npos) << why;
  // An intact store still opens and appends on.
  auto ok = fresh_store(20);
  EXPECT_EQ(refusal(ok), "");
}

// Metadata that is there but garbage: a store id that is not one (it would name this
// chain to the collector), a schema that is not a number (not "older or newer").
TEST(StoreDamage, GarbageStoreIdOrSchemaIsRefusedAsDamage) {
  auto db = fresh_store(5);
  testing::StoreFile(db).exec("UPDATE meta SET value = 'x''; DROP' WHERE key = 'store_id'");
  auto why = refusal(db);
  EXPECT_NE(why.find("meta 'store_id' is 'x'; DROP', not a store id (32 hex digits)"), std::string::npos) << why;
  EXPECT_NE(why.find("move it aside"), std::string::npos) << why;
  StoreOptions ro;
  ro.read_only = true;
  auto r = EventStore::open(db, ro);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("not a store id"), std::string::npos) << r.error().message();

  db = fresh_store(5);
  testing::StoreFile(db).exec("UPDATE meta SET value = 'three' WHERE key = 'schema'");
  why = refusal(db);
  EXPECT_NE(why.find("meta 'schema' is 'three', not a version number: the store's metadata is damaged"),
            std::string::npos)
      << why;
  EXPECT_EQ(why.find("older or newer"), std::string::npos) << why;
}

// Pages overwritten in the middle of the file (a torn write, a bad disk): without a page
// check the store opens "healthy" and fails on whichever query meets them; long-lived
// openers (agentcaged, the collector: StoreOptions::check_pages) refuse it at open,
// naming what SQLite found.
TEST(StoreDamage, DamagedPagesAreFoundAtOpenByLongLivedOpeners) {
  auto db = fresh_store(5000);
  auto size = std::filesystem::file_size(db);
  ASSERT_GT(size, 40u * 4096) << "the store is too small to damage in the middle";
  {
    FILE* f = fopen(db.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::string junk(4096, '\x5a');
    for (double at : {0.4, 0.5, 0.6}) {
      long page = static_cast<long>(static_cast<double>(size / 4096) * at);
      ASSERT_EQ(fseek(f, page * 4096, SEEK_SET), 0);
      ASSERT_EQ(fwrite(junk.data(), 1, junk.size(), f), junk.size());
    }
    fclose(f);
  }
  StoreOptions checked;
  checked.check_pages = true;
  auto s = EventStore::open(db, checked);
  ASSERT_FALSE(s.has_value()) << "a store with damaged pages opened";
  EXPECT_NE(s.error().message().find("its pages are damaged (SQLite quick_check: "), std::string::npos)
      << s.error().message();
  EXPECT_NE(s.error().message().find("move it aside"), std::string::npos) << s.error().message();
  // An intact store passes the same check.
  auto ok = fresh_store(5000);
  EXPECT_TRUE(EventStore::open(ok, checked).has_value());
}

std::vector<v1::Event> losses(const std::string& db) {
  StoreOptions o;
  o.read_only = true;
  auto s = EventStore::open(db, o);
  std::vector<v1::Event> out;
  if (!s) return out;
  StoreQuery q;
  q.kinds = {"loss"};
  (void)(*s)->query(q, [&](const v1::Event& e) {
    out.push_back(e);
    return true;
  });
  return out;
}

// The fault review: a store deleted or truncated to 0 started a new chain at seq 1 as if
// it were a first start, and a lost WAL after a crash silently reused seqs. The identity
// file beside the store makes the new store's first record say so.
TEST(StoreDamage, ADeletedOrTruncatedStoreSaysSoInItsNewChain) {
  for (bool truncate : {false, true}) {
    auto db = fresh_store(30);
    std::string old_id;
    {
      StoreOptions o;
      o.read_only = true;
      old_id = (*EventStore::open(db, o))->store_id();
    }
    if (truncate) {
      ASSERT_EQ(::truncate(db.c_str(), 0), 0);
      for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(db + suffix);
    } else {
      for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
    }
    ASSERT_EQ(refusal(db), "");
    auto l = losses(db);
    ASSERT_EQ(l.size(), 1u) << truncate;
    EXPECT_EQ(l[0].seq(), 1u);
    EXPECT_EQ(l[0].loss().reason(), "store_replaced");
    EXPECT_NE(l[0].loss().where().find("store " + old_id + " was there (through seq 30"), std::string::npos)
        << l[0].loss().where();
    ASSERT_EQ(refusal(db), "");  // told once, not at every start
    EXPECT_EQ(losses(db).size(), 1u);
  }
}

// The identity file goes wherever the store goes: a store directory removed whole (or
// restored from a copy together with its identity file) looked like a first install.
// The witness kept outside the directory still names the store that was there.
TEST(StoreDamage, AStoreRemovedWithItsDirectoryIsToldByTheWitness) {
  static int k = 0;
  std::string dir = fmt::format("/tmp/agentcage-witness-test-{}-{}", getpid(), ++k);
  std::string witness = dir + "-witness";
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(witness);
  std::string db = dir + "/store/audit.db";
  StoreOptions o;
  o.witness_dir = witness;
  auto open_appending = [&](int n) {
    std::filesystem::create_directories(dir + "/store");
    auto s = EventStore::open(db, o);
    EXPECT_TRUE(s.has_value()) << s.error().message();
    if (!s) return std::string();
    std::vector<v1::Event> evs(static_cast<size_t>(n));
    for (auto& ev : evs) ev.mutable_exec()->set_filename("/bin/echo");
    if (n) {
      EXPECT_TRUE((*s)->append_batch(evs).has_value());
    }
    EXPECT_EQ((*s)->origin_notice(), "") << "a first store, or one that continues, has no finding";
    return (*s)->store_id();
  };
  std::string old_id = open_appending(30);
  ASSERT_FALSE(old_id.empty());
  ASSERT_EQ(std::filesystem::directory_iterator(witness)->path().extension(), ".id");

  std::filesystem::remove_all(dir + "/store");
  std::filesystem::create_directories(dir + "/store");
  {
    auto s = EventStore::open(db, o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    EXPECT_NE((*s)->origin_notice().find("store " + old_id + " was there (through seq 30"), std::string::npos)
        << (*s)->origin_notice();
    EXPECT_NE((*s)->origin_notice().find("its identity file with it (the witness " + witness), std::string::npos)
        << (*s)->origin_notice();
  }
  auto l = losses(db);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].seq(), 1u);
  EXPECT_EQ(l[0].loss().reason(), "store_replaced");
  {
    auto s = EventStore::open(db, o);  // told once: the witness now names the new store
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ((*s)->origin_notice(), "");
  }
  EXPECT_EQ(losses(db).size(), 1u);

  // Without a witness the directory's removal cannot be told: what the option is for.
  std::filesystem::remove_all(dir + "/store");
  std::filesystem::create_directories(dir + "/store");
  ASSERT_EQ(refusal(db), "");
  EXPECT_EQ(losses(db).size(), 0u);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(witness);
}

TEST(StoreDamage, AStoreRestoredWithItsIdentityFileIsARollbackToldByTheWitness) {
  static int k = 0;
  std::string dir = fmt::format("/tmp/agentcage-restore-test-{}-{}", getpid(), ++k);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/store");
  std::string db = dir + "/store/audit.db";
  StoreOptions o;
  o.witness_dir = dir + "/witness";
  auto append = [&](int n) {
    auto s = EventStore::open(db, o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    std::vector<v1::Event> evs(static_cast<size_t>(n));
    for (auto& ev : evs) ev.mutable_exec()->set_filename("/bin/echo");
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  };
  append(10);
  // The copy an intruder keeps: the closed store and its identity file, at seq 10.
  std::filesystem::copy(dir + "/store", dir + "/copy", std::filesystem::copy_options::recursive);
  append(20);
  std::filesystem::remove_all(dir + "/store");
  std::filesystem::rename(dir + "/copy", dir + "/store");
  {
    auto s = EventStore::open(db, o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    EXPECT_NE((*s)->origin_notice().find("went back from seq 30 to 10"), std::string::npos) << (*s)->origin_notice();
  }
  auto l = losses(db);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].seq(), 11u);
  EXPECT_EQ(l[0].loss().reason(), "store_rolled_back");
  EXPECT_EQ(l[0].loss().count(), 20u);
  std::filesystem::remove_all(dir);
}

TEST(StoreDamage, AHeadThatWentBackIsALossNamingHowFar) {
  auto db = fresh_store(30);
  // What a lost WAL does: the head and its rows go back, as if never written.
  testing::StoreFile(db).exec(
      "DELETE FROM events WHERE seq > 20; UPDATE meta SET value = '20' WHERE key = 'head_seq'; "
      "UPDATE meta SET value = (SELECT hash FROM events WHERE seq = 20) WHERE key = 'head_hash'");
  ASSERT_EQ(refusal(db), "");
  auto l = losses(db);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].seq(), 21u);
  EXPECT_EQ(l[0].loss().reason(), "store_rolled_back");
  EXPECT_EQ(l[0].loss().count(), 10u);
  EXPECT_NE(l[0].loss().where().find("went back from seq 30 to 20"), std::string::npos) << l[0].loss().where();
}

// A sqlite3 shell on the store while the writer runs: it must see the writer's lock on the
// database file, so it neither checkpoints nor deletes the -wal and -shm the writer uses.
TEST(StoreDamage, AnotherProcessesReadWriteConnectionLeavesTheLiveWalAlone) {
  auto db = fresh_store(10);
  auto s = EventStore::open(db, {});
  ASSERT_TRUE(s.has_value()) << s.error().message();
  v1::Event ev;
  ev.set_sandbox_id("sb1");
  ev.mutable_exec()->set_filename("/bin/true");
  std::vector<v1::Event> one{ev};
  ASSERT_TRUE((*s)->append_batch(one).has_value());
  ASSERT_EQ(access((db + "-wal").c_str(), F_OK), 0);
  // Another process (exec'd: a forked copy would share this one's SQLite lock table).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    execl("/usr/bin/python3", "python3", "-c",
          "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM events').fetchall(); "
          "c.close()",
          db.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(access((db + "-wal").c_str(), F_OK), 0) << "the writer's WAL was deleted under it";
  EXPECT_EQ(access((db + "-shm").c_str(), F_OK), 0);
  one = {ev};
  ASSERT_TRUE((*s)->append_batch(one).has_value());
  s->reset();
  auto again = EventStore::open(db, {});
  ASSERT_TRUE(again.has_value()) << again.error().message();
  EXPECT_EQ((*again)->last_seq(), 12u);
}

}  // namespace
}  // namespace agentcage::core
