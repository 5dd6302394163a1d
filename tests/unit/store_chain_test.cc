// SPDX-License-Identifier: Apache-2.0
// The keyed chain and its anchors on real store files: what an intruder who can write the
// file does (tests/support/store_tamper.h), with and without the chain key, and what
// `verify` says about it with and without checkpoints.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/store/chain_key.h"
#include "core/store/store.h"
#include "support/store_tamper.h"

namespace agentcage::core {
namespace {

std::string temp_dir() {
  static int n = 0;
  std::string d = fmt::format("/tmp/agentcage-chain-test-{}-{}", getpid(), ++n);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

v1::Event exec_event(int i, uint64_t time_ns = 0) {
  v1::Event ev;
  ev.set_node("node-a");
  ev.set_time_ns(time_ns ? time_ns : 1'700'000'000'000'000'000ull + static_cast<uint64_t>(i));
  ev.set_sandbox_id("sb1");
  ev.mutable_process()->set_pid(100 + static_cast<uint32_t>(i));
  ev.mutable_exec()->set_filename(i % 7 == 0 ? "/usr/bin/curl" : "/bin/echo");
  return ev;
}

struct Node {
  std::string dir, db, key;
};

StoreOptions keyed_opts(const Node& n) {
  StoreOptions o;
  o.chain_key_path = n.key;
  o.create_chain_key = true;
  return o;
}

// A keyed node store with n events.
Node keyed_node(int n, StoreOptions extra = {}) {
  Node node{temp_dir(), "", ""};
  node.db = node.dir + "/audit.db";
  node.key = node.dir + "/chain.key";
  extra.chain_key_path = node.key;
  extra.create_chain_key = true;
  auto s = EventStore::open(node.db, extra);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  std::vector<v1::Event> evs;
  for (int i = 1; i <= n; ++i) evs.push_back(exec_event(i));
  EXPECT_TRUE((*s)->append_batch(evs).has_value());
  return node;
}

VerifyReport verify(const std::string& db, const std::string& key, const std::vector<v1::Checkpoint>* anchors = nullptr) {
  StoreOptions o;
  o.read_only = true;
  o.chain_key_path = key;
  auto s = EventStore::open(db, o);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  auto r = (*s)->verify(anchors);
  EXPECT_TRUE(r.has_value()) << r.error().message();
  return *r;
}

v1::Checkpoint checkpoint(const Node& n) {
  StoreOptions o;
  o.read_only = true;
  o.chain_key_path = n.key;
  auto s = EventStore::open(n.db, o);
  EXPECT_TRUE(s.has_value());
  auto cp = (*s)->signed_head("node-a");
  EXPECT_TRUE(cp.has_value()) << cp.error().message();
  return *cp;
}

std::string secret_of(const Node& n) {
  auto ring = load_chain_keys(n.key);
  EXPECT_TRUE(ring.has_value()) << ring.error().message();
  return ring->current().secret;
}

TEST(ChainKey, FileIsPrivateAndRefusedWhenOthersCanReadIt) {
  auto d = temp_dir();
  auto ring = create_chain_key(d + "/k/chain.key", false);
  ASSERT_TRUE(ring.has_value()) << ring.error().message();
  struct stat st{};
  ASSERT_EQ(stat((d + "/k/chain.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ring->keys.size(), 1u);
  EXPECT_EQ(ring->current().id, chain_key_id(ring->current().secret));
  // Never overwritten: a second create fails, naming rotation.
  auto again = create_chain_key(d + "/k/chain.key", false);
  ASSERT_FALSE(again.has_value());
  EXPECT_NE(again.error().message().find("--rotate"), std::string::npos) << again.error().message();
  chmod((d + "/k/chain.key").c_str(), 0644);
  auto bad = load_chain_keys(d + "/k/chain.key");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("chmod 600"), std::string::npos) << bad.error().message();
  // And a store opened with it refuses to run rather than fall back to an unkeyed chain.
  StoreOptions o;
  o.chain_key_path = d + "/k/chain.key";
  EXPECT_FALSE(EventStore::open(d + "/s.db", o).has_value());
  // A damaged line is named by its line number.
  chmod((d + "/k/chain.key").c_str(), 0600);
  std::ofstream(d + "/k/chain.key", std::ios::app) << "v1 0123456789abcdef zz 1\n";
  bad = load_chain_keys(d + "/k/chain.key");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("chain.key:4"), std::string::npos) << bad.error().message();
}

TEST(KeyedChain, RechainWithoutTheKeyIsCaught) {
  auto n = keyed_node(50);
  auto rep = verify(n.db, n.key);
  ASSERT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.chain.rfind("keyed (key id ", 0), 0u) << rep.chain;
  EXPECT_TRUE(rep.notes.empty());
  // Rewrite seq 21 (curl -> echo) and recompute every later hash with plain SHA-256, the
  // head too: an unkeyed chain would pass; the keyed one does not.
  testing::StoreFile(n.db).rechain(21, "", [](uint64_t seq, v1::Event& ev) {
    if (seq == 21) ev.mutable_exec()->set_filename("/bin/echo");
  });
  rep = verify(n.db, n.key);
  EXPECT_FALSE(rep.ok);
  EXPECT_EQ(rep.first_bad_seq, 21u);
  EXPECT_NE(rep.what.find("re-chained without the key"), std::string::npos) << rep.what;
  // Declaring the chain unkeyed from there on is caught as well.
  testing::StoreFile(n.db).exec("UPDATE meta SET value = value || ';21:-' WHERE key = 'chain_epochs'");
  rep = verify(n.db, n.key);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("drops its key at seq 21"), std::string::npos) << rep.what;
}

TEST(KeyedChain, WithoutTheKeyVerifyIsUnverifiedAndAppendsAreRefused) {
  auto n = keyed_node(10);
  auto rep = verify(n.db, "");
  EXPECT_FALSE(rep.ok);
  EXPECT_TRUE(rep.unverifiable);
  EXPECT_NE(rep.what.find("key id"), std::string::npos) << rep.what;
  auto s = EventStore::open(n.db, {});
  ASSERT_TRUE(s.has_value());
  v1::Event ev = exec_event(11);
  auto r = (*s)->append(ev);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("holds no chain key"), std::string::npos) << r.error().message();
  EXPECT_TRUE(verify(n.db, n.key).ok);
}

TEST(KeyedChain, RotationKeepsOlderRowsVerifiable) {
  auto n = keyed_node(10);
  auto old_id = load_chain_keys(n.key)->current().id;
  auto ring = create_chain_key(n.key, true);
  ASSERT_TRUE(ring.has_value()) << ring.error().message();
  ASSERT_EQ(ring->keys.size(), 2u);
  {
    auto s = EventStore::open(n.db, keyed_opts(n));
    ASSERT_TRUE(s.has_value());
    std::vector<v1::Event> evs{exec_event(11), exec_event(12)};
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  }
  auto epochs = testing::StoreFile(n.db).blob("SELECT value FROM meta WHERE key = 'chain_epochs'");
  EXPECT_EQ(epochs, fmt::format("1:{};11:{}", old_id, ring->current().id));
  auto rep = verify(n.db, n.key);
  EXPECT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.checked, 12u);
  EXPECT_NE(rep.chain.find(old_id), std::string::npos) << rep.chain;
}

TEST(KeyedChain, UnkeyedStoreGainsAKeyAndSaysWhichRowsAreWeaker) {
  auto d = temp_dir();
  {
    auto s = EventStore::open(d + "/a.db", {});  // no key: plain SHA-256
    ASSERT_TRUE(s.has_value());
    std::vector<v1::Event> evs{exec_event(1), exec_event(2)};
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  }
  Node n{d, d + "/a.db", d + "/chain.key"};
  {
    auto s = EventStore::open(n.db, keyed_opts(n));
    ASSERT_TRUE(s.has_value());
    v1::Event ev = exec_event(3);
    ASSERT_TRUE((*s)->append(ev).has_value());
  }
  auto rep = verify(n.db, n.key);
  EXPECT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.chain.rfind("partly keyed", 0), 0u) << rep.chain;
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("seq 1..2 are hashed without a key"), std::string::npos) << rep.notes[0];
}

TEST(RetentionEvidence, HeadDeletionDisguisedAsRetentionIsCaught) {
  auto n = keyed_node(30);
  testing::StoreFile(n.db).delete_head_through(10);
  auto rep = verify(n.db, n.key);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("no retention record"), std::string::npos) << rep.what;
}

TEST(RetentionEvidence, ConfiguredRetentionVerifiesAndDeletingMoreIsCaught) {
  StoreOptions o;
  o.max_age = std::chrono::hours(1);
  auto n = keyed_node(20, o);  // all old: retention takes them
  {
    auto s = EventStore::open(n.db, [&] { auto x = keyed_opts(n); x.max_age = o.max_age; return x; }());
    ASSERT_TRUE(s.has_value());
    std::vector<v1::Event> fresh{exec_event(21, 0), exec_event(22, 0)};
    for (auto& e : fresh) e.set_time_ns(0);  // stamped now
    ASSERT_TRUE((*s)->append_batch(fresh).has_value());
    ASSERT_TRUE((*s)->apply_retention().has_value());
  }
  auto rep = verify(n.db, n.key);
  EXPECT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.checkpoint_seq, 20u);
  // One more row deleted by hand past what retention recorded.
  testing::StoreFile(n.db).delete_head_through(21);
  rep = verify(n.db, n.key);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("last retention record"), std::string::npos) << rep.what;
}

TEST(Anchors, TruncationRechainAndReplacementAreCaughtAgainstCheckpoints) {
  auto n = keyed_node(40);
  std::vector<v1::Checkpoint> anchors{checkpoint(n)};
  EXPECT_EQ(anchors[0].seq(), 40u);
  EXPECT_FALSE(anchors[0].mac().empty());
  auto rep = verify(n.db, n.key, &anchors);
  ASSERT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.anchors_checked, 1u);
  EXPECT_EQ(rep.anchored_seq, 40u);

  auto copy = [&](const std::string& name) {
    std::filesystem::copy_file(n.db, n.dir + "/" + name);
    return n.dir + "/" + name;
  };
  // Tail cut, head moved back: every remaining link is genuine.
  auto t = copy("truncated.db");
  testing::StoreFile(t).truncate_after(30);
  EXPECT_TRUE(verify(t, n.key).ok);
  rep = verify(t, n.key, &anchors);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("truncated"), std::string::npos) << rep.what;

  // Re-chained with the key (root on the node holds it): passes alone, not anchored.
  auto r = copy("rechained.db");
  testing::StoreFile(r).rechain(7, secret_of(n), [](uint64_t seq, v1::Event& ev) {
    if (seq == 7) ev.mutable_exec()->set_filename("/bin/true");
  });
  EXPECT_TRUE(verify(r, n.key).ok);
  rep = verify(r, n.key, &anchors);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("re-chained"), std::string::npos) << rep.what;

  // A store the collector never saw (replaced wholesale).
  auto other = keyed_node(40);
  rep = verify(other.db, other.key, &anchors);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("replaced"), std::string::npos) << rep.what;

  // A checkpoint that was not signed with the key.
  auto forged = anchors;
  forged[0].set_seq(35);
  rep = verify(n.db, n.key, &forged);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("forged checkpoint"), std::string::npos) << rep.what;
}

TEST(Anchors, ForgedRetentionRecordIsCaughtWhenCheckpointsSayNoRetention) {
  auto n = keyed_node(30);
  std::vector<v1::Checkpoint> anchors{checkpoint(n)};
  EXPECT_EQ(anchors[0].retention(), "none");
  // Root with the key deletes rows 1..10 and appends a retention record to match.
  std::string h = testing::StoreFile(n.db).blob("SELECT hash FROM events WHERE seq = 10");
  testing::StoreFile(n.db).delete_head_through(10);
  {
    auto s = EventStore::open(n.db, keyed_opts(n));
    ASSERT_TRUE(s.has_value());
    v1::Event rec;
    rec.mutable_loss()->set_reason("retention");
    rec.mutable_loss()->set_count(10);
    rec.mutable_loss()->set_through_seq(10);
    rec.mutable_loss()->set_through_hash(h);
    ASSERT_TRUE((*s)->append(rec).has_value());
  }
  EXPECT_TRUE(verify(n.db, n.key).ok);  // locally it looks like retention
  auto rep = verify(n.db, n.key, &anchors);
  EXPECT_FALSE(rep.ok);
  EXPECT_NE(rep.what.find("without retention"), std::string::npos) << rep.what;
}

TEST(Anchors, ConfiguredRetentionIsNotFlagged) {
  StoreOptions o;
  o.max_age = std::chrono::hours(1);
  auto n = keyed_node(20, o);
  auto opts = keyed_opts(n);
  opts.max_age = o.max_age;
  std::vector<v1::Checkpoint> anchors;
  {
    auto s = EventStore::open(n.db, opts);
    ASSERT_TRUE(s.has_value());
    auto cp = (*s)->signed_head("node-a");
    ASSERT_TRUE(cp.has_value());
    EXPECT_EQ(cp->retention(), "max_age=3600s max_bytes=0");
    anchors.push_back(*cp);
    std::vector<v1::Event> fresh{exec_event(21), exec_event(22)};
    for (auto& e : fresh) e.set_time_ns(0);
    ASSERT_TRUE((*s)->append_batch(fresh).has_value());
    ASSERT_TRUE((*s)->apply_retention().has_value());
    anchors.push_back(*(*s)->signed_head("node-a"));
  }
  auto rep = verify(n.db, n.key, &anchors);
  EXPECT_TRUE(rep.ok) << rep.what;
  EXPECT_EQ(rep.checkpoint_seq, 20u);
  EXPECT_EQ(rep.anchors_checked, 1u);  // the one at seq 20 is deleted; the retention record speaks for it
}

// sqlite3 answers "what did sandbox X open under ~/.ssh" from the columns beside the
// blob, and a column edited to hide a row from such a query fails verify.
TEST(QueryColumns, Sqlite3FindsWhatASandboxOpenedAndEditsAreCaught) {
  auto n = keyed_node(0);
  {
    auto s = EventStore::open(n.db, keyed_opts(n));
    ASSERT_TRUE(s.has_value());
    std::vector<v1::Event> evs(3);
    for (auto& e : evs) {
      e.set_sandbox_id("sbX");
      e.mutable_process()->set_pid(42);
      e.mutable_process()->set_binary("/usr/bin/cat");
    }
    evs[0].mutable_file()->set_path("/home/u/.ssh/id_ed25519");
    evs[1].mutable_file()->set_path("/home/u/notes.txt");
    auto* v = evs[2].mutable_violation();
    v->set_mechanism("landlock");
    v->mutable_file()->set_path(std::string("/home/u/.ssh/known_\xff", 23));
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  }
  testing::StoreFile f(n.db);
  EXPECT_EQ(f.blob("SELECT group_concat(seq || ':' || pid || ':' || binary || ':' || coalesce(mechanism, '-'), ' ') "
                   "FROM events WHERE sandbox_id = 'sbX' AND path LIKE '/home/u/.ssh/%'"),
            "1:42:/usr/bin/cat:- 3:42:/usr/bin/cat:landlock");
  ASSERT_TRUE(verify(n.db, n.key).ok);
  f.exec("UPDATE events SET path = '/tmp/x' WHERE seq = 1");
  auto rep = verify(n.db, n.key);
  EXPECT_FALSE(rep.ok);
  EXPECT_EQ(rep.first_bad_seq, 1u);
  EXPECT_NE(rep.what.find("column path"), std::string::npos) << rep.what;
}

}  // namespace
}  // namespace agentcage::core
