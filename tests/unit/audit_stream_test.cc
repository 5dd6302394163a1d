// SPDX-License-Identifier: Apache-2.0
// The remote audit stream end to end with real processes and real sockets on loopback
// (ports picked by the OS): `agentcage collector`, `agentcage audit push`, `agentcage
// audit verify`, the sqlite3 CLI as the attacker, kill -9 as the crash. No privileges.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "agentcage/v1/audit.grpc.pb.h"
#include "core/audit/audit_client.h"
#include "core/store/store.h"
#include "core/store/chain_key.h"
#include "support/store_tamper.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using namespace std::chrono_literals;
using testing::run;

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

v1::Event make_event(int i, const std::string& node, bool violation) {
  v1::Event ev;
  ev.set_node(node);
  ev.set_time_ns(1'700'000'000'000'000'000ull + static_cast<uint64_t>(i));
  ev.set_sandbox_id("sb-" + std::to_string(i % 3));
  ev.mutable_process()->set_pid(100 + static_cast<uint32_t>(i));
  if (violation) {
    auto* v = ev.mutable_violation();
    v->set_mechanism("cgroup-bpf");
    v->set_rule("network.default: deny");
    v->set_action("deny");
    v->set_what(fmt::format("connect 203.0.113.9:{}/tcp", i));
  } else {
    ev.mutable_exec()->set_filename("/bin/echo");
  }
  return ev;
}

// A node store with n events; every 5th a violation.
std::unique_ptr<core::EventStore> node_store(const std::string& path, int n, const std::string& node = "node-a") {
  auto s = core::EventStore::open(path, {});
  EXPECT_TRUE(s.has_value()) << s.error().message();
  std::vector<v1::Event> evs;
  for (int i = 1; i <= n; ++i) {
    evs.push_back(make_event(i, node, i % 5 == 0));
    if (evs.size() == 1000 || i == n) {
      EXPECT_TRUE((*s)->append_batch(evs).has_value());
      evs.clear();
    }
  }
  return std::move(*s);
}

uint64_t count_rows(const std::string& db_path, const std::string& where = "1", const std::string& table = "events") {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return 0;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  uint64_t n = 0;
  if (sqlite3_prepare_v2(db, ("SELECT count(*) FROM " + table + " WHERE " + where).c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// The origin seqs a collector store holds for `node`, in storage order.
std::vector<uint64_t> origin_seqs(const std::string& db_path, const std::string& node) {
  core::StoreOptions o;
  o.read_only = true;
  auto s = core::EventStore::open(db_path, o);
  EXPECT_TRUE(s.has_value()) << s.error().message();
  std::vector<uint64_t> out;
  core::StoreQuery q;
  q.node = node;
  EXPECT_TRUE((*s)->query(q, [&](const v1::Event& e) {
                   out.push_back(e.seq());
                   return true;
                 }).has_value());
  return out;
}

struct Collector {
  pid_t pid = -1;
  int port = 0;
  std::string log;
};

Collector start_collector(const std::string& dir, const std::string& db, int port,
                          std::vector<std::string> extra = {"--insecure", "--insecure-accept-any-node"}) {
  static int n = 0;
  Collector c;
  c.log = fmt::format("{}/collector-{}.log", dir, ++n);
  // The collector keys its own chain; a key of the test's own, not the host's.
  std::vector<std::string> argv{AGENTCAGE_BIN, "collector", "--listen", fmt::format("127.0.0.1:{}", port), "--db", db,
                                "--chain-key", dir + "/collector.key"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  c.pid = testing::start(argv, c.log);
  std::regex re("listening on 127\\.0\\.0\\.1:([0-9]+)");
  for (int i = 0; i < 200; ++i) {
    std::smatch m;
    std::string text = read_file(c.log);
    if (std::regex_search(text, m, re)) {
      c.port = std::stoi(m[1]);
      return c;
    }
    if (!testing::pid_alive(c.pid)) break;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "collector did not start: " << read_file(c.log);
  return c;
}

int stop(pid_t pid, int sig = SIGTERM) {
  kill(pid, sig);
  return testing::wait_status(pid);
}

std::vector<std::string> push_argv(const std::string& db, int port, std::vector<std::string> extra) {
  std::vector<std::string> argv{AGENTCAGE_BIN, "audit", "push", "--db", db, "--endpoint",
                                fmt::format("127.0.0.1:{}", port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::seconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

void expect_exactly(const std::vector<uint64_t>& seqs, uint64_t n) {
  ASSERT_EQ(seqs.size(), n);
  std::set<uint64_t> uniq(seqs.begin(), seqs.end());
  EXPECT_EQ(uniq.size(), n);
  EXPECT_EQ(*uniq.begin(), 1u);
  EXPECT_EQ(*uniq.rbegin(), n);
}

TEST(AuditStream, ViolationsFromTwoNodesArriveOnceAndVerify) {
  auto dir = testing::temp_dir();
  auto a = node_store(dir + "/a.db", 300, "node-a");
  auto b = node_store(dir + "/b.db", 100, "");  // events without a node: the client stamps it
  auto c = start_collector(dir, dir + "/collector.db", 0);
  ASSERT_GT(c.port, 0);

  auto ra = run(push_argv(dir + "/a.db", c.port, {"--insecure", "--once", "--node", "node-a"}));
  ASSERT_EQ(ra.status, 0) << ra.err << ra.out;
  EXPECT_NE(ra.out.find("acknowledged through seq 300 (60 events sent"), std::string::npos) << ra.out;
  auto rb = run(push_argv(dir + "/b.db", c.port, {"--insecure", "--once", "--node", "node-b"}));
  ASSERT_EQ(rb.status, 0) << rb.err << rb.out;
  // Pushing again sends nothing: the collector's hello says it has everything.
  auto again = run(push_argv(dir + "/a.db", c.port, {"--insecure", "--once", "--node", "node-a"}));
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.out.find("(0 events sent"), std::string::npos) << again.out;
  EXPECT_NE(again.err.find("resuming after seq 300"), std::string::npos) << again.err;
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);

  // Exactly the violations, byte-identical to the node's, in order.
  std::vector<v1::Event> want;
  core::StoreQuery vq;
  vq.violations_only = true;
  ASSERT_TRUE(a->query(vq, [&](const v1::Event& e) {
                 want.push_back(e);
                 return true;
               }).has_value());
  ASSERT_EQ(want.size(), 60u);
  core::StoreOptions ro;
  ro.read_only = true;
  auto cs = core::EventStore::open(dir + "/collector.db", ro);
  ASSERT_TRUE(cs.has_value());
  std::vector<v1::Event> got;
  core::StoreQuery q;
  q.node = "node-a";
  ASSERT_TRUE((*cs)->query(q, [&](const v1::Event& e) {
                   got.push_back(e);
                   return true;
                 }).has_value());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(core::canonical_bytes(got[i]), core::canonical_bytes(want[i])) << "event " << i;
  auto bseqs = origin_seqs(dir + "/collector.db", "node-b");
  ASSERT_EQ(bseqs.size(), 20u);
  EXPECT_EQ(bseqs.front(), 5u);

  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", dir + "/collector.db", "--chain-key", dir + "/collector.key"});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  EXPECT_EQ(v.out.rfind("OK: 80 events, chain intact, keyed (key id ", 0), 0u) << v.out;
  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", dir + "/a.db"});
  EXPECT_EQ(v.out.rfind("OK: 300 events, chain intact, unkeyed\nhead: seq 300 hash ", 0), 0u) << v.out;
  // The documented recipe, implemented without agentcage's code, agrees.
  for (auto db : {"/a.db", "/collector.db"}) {
    auto py = run({"python3", std::string(AGENTCAGE_SOURCE_DIR) + "/scripts/verify_audit_chain.py", "--key",
                   dir + "/collector.key", dir + db});
    EXPECT_EQ(py.status, 0) << py.out << py.err;
    EXPECT_NE(py.out.find("OK:"), std::string::npos) << py.out;
  }
}

TEST(AuditVerify, Sqlite3CliEditsAreNamed) {
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db";
  node_store(db, 50);
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
  ASSERT_EQ(v.status, 0);
  EXPECT_EQ(v.out.rfind("OK: 50 events, chain intact, unkeyed\n", 0), 0u) << v.out;

  // Rewrite the violation at seq 25 into a harmless-looking one (same seq, valid event).
  auto ev = make_event(25, "node-a", true);
  ev.set_seq(25);
  ev.mutable_violation()->set_what("connect 10.0.0.1:53/udp");
  std::string hex;
  for (unsigned char ch : core::canonical_bytes(ev)) hex += fmt::format("{:02X}", ch);
  auto e = run({"sqlite3", db, "UPDATE events SET event = X'" + hex + "' WHERE seq = 25;"});
  ASSERT_EQ(e.status, 0) << e.err;
  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
  EXPECT_EQ(v.status, 1);
  EXPECT_EQ(v.out.rfind("BROKEN at seq 25: edited", 0), 0u) << v.out;
  auto py = run({"python3", std::string(AGENTCAGE_SOURCE_DIR) + "/scripts/verify_audit_chain.py", db});
  EXPECT_EQ(py.status, 1);
  EXPECT_NE(py.out.find("BROKEN at seq 25"), std::string::npos) << py.out;

  auto db2 = dir + "/node2.db";
  node_store(db2, 50);
  ASSERT_EQ(run({"sqlite3", db2, "DELETE FROM events WHERE seq = 30;"}).status, 0);
  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db2});
  EXPECT_EQ(v.status, 1);
  EXPECT_EQ(v.out, "BROKEN at seq 30: deleted: seq 30 is missing (the next row is seq 31)\n");

  auto db3 = dir + "/node3.db";
  node_store(db3, 50);
  ASSERT_EQ(run({"sqlite3", db3, "UPDATE events SET is_violation = 0 WHERE seq = 35;"}).status, 0);
  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db3});
  EXPECT_EQ(v.status, 1);
  EXPECT_EQ(v.out.rfind("BROKEN at seq 35: edited: column is_violation", 0), 0u) << v.out;

  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", dir + "/missing.db"});
  EXPECT_EQ(v.status, 2);
  EXPECT_NE(v.err.find("no such file"), std::string::npos) << v.err;
}

TEST(AuditStream, CollectorOutageUnderLoadLosesNothing) {
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db";
  auto store = node_store(db, 0);
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  int port = c.port;
  pid_t push = testing::start(push_argv(db, port, {"--insecure", "--all", "--node", "node-a", "--batch", "200"}),
                              dir + "/push.log");

  constexpr int kRounds = 200, kPer = 100;  // 20000 events over ~5 s
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int r = 0; r < kRounds; ++r) {
      std::vector<v1::Event> evs;
      for (int i = 0; i < kPer; ++i) evs.push_back(make_event(r * kPer + i + 1, "node-a", i % 7 == 0));
      EXPECT_TRUE(store->append_batch(evs).has_value());
      std::this_thread::sleep_for(25ms);
    }
    writing = false;
  });
  constexpr uint64_t kTotal = kRounds * kPer;
  // Two outages while events stream in: a clean stop (SIGTERM: in-flight batches are
  // finished or refused) and a crash (SIGKILL: an open transaction rolls back). Each time
  // the collector stays down a while, then starts again on the same port and store.
  Collector cur = c;
  for (auto [sig, above] : {std::pair{SIGTERM, 1000ul}, std::pair{SIGKILL, 8000ul}}) {
    ASSERT_TRUE(wait_until([&] { return count_rows(cdb) > above; }, 30s)) << read_file(dir + "/push.log");
    EXPECT_TRUE(writing) << "the outage must happen under load";
    EXPECT_EQ(stop(cur.pid, sig), sig == SIGTERM ? 0 : 128 + SIGKILL) << read_file(cur.log);
    EXPECT_LT(count_rows(cdb), kTotal) << "the outage must happen mid-stream";
    std::this_thread::sleep_for(1000ms);
    cur = start_collector(dir, cdb, port);
    ASSERT_EQ(cur.port, port);
  }
  auto c2 = cur;
  writer.join();
  EXPECT_TRUE(wait_until([&] { return count_rows(cdb) >= kTotal; }, 60s))
      << count_rows(cdb) << " of " << kTotal << "\n" << read_file(dir + "/push.log");
  EXPECT_EQ(stop(push), 0) << read_file(dir + "/push.log");
  EXPECT_EQ(stop(c2.pid), 0) << read_file(c2.log);

  std::string plog = read_file(dir + "/push.log");
  EXPECT_NE(plog.find("reconnecting"), std::string::npos) << plog;
  EXPECT_NE(plog.find(fmt::format("acknowledged through seq {}", kTotal)), std::string::npos) << plog;
  expect_exactly(origin_seqs(cdb, "node-a"), kTotal);
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", cdb, "--chain-key", dir + "/collector.key"});
  EXPECT_EQ(v.out.rfind(fmt::format("OK: {} events, chain intact, keyed", kTotal), 0), 0u) << v.out << v.err;
}

TEST(AuditStream, PushClientKilledResumesFromTheLastAck) {
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db";
  constexpr uint64_t kTotal = 20000;
  auto store = node_store(db, kTotal);
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  // Small batches so the kill lands mid-stream.
  pid_t push = testing::start(push_argv(db, c.port, {"--insecure", "--all", "--node", "node-a", "--batch", "10"}),
                              dir + "/push1.log");
  ASSERT_TRUE(wait_until([&] { return count_rows(cdb) >= 2000; }, 30s)) << read_file(dir + "/push1.log");
  EXPECT_EQ(stop(push, SIGKILL), 128 + SIGKILL);
  std::this_thread::sleep_for(300ms);  // let the collector store what was already on the wire
  uint64_t have = count_rows(cdb);
  ASSERT_LT(have, kTotal) << "the kill must land mid-stream";

  // The killed client had persisted its acknowledged position in the store.
  auto acked = store->kv_get(core::audit_ack_key(fmt::format("127.0.0.1:{}", c.port)));
  ASSERT_TRUE(acked.has_value() && acked->has_value());
  EXPECT_GT(std::stoull(**acked), 0u);
  EXPECT_LE(std::stoull(**acked), have);

  auto r = run(push_argv(db, c.port, {"--insecure", "--all", "--node", "node-a", "--once"}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("resuming after seq ([0-9]+)"))) << r.err;
  uint64_t resumed = std::stoull(m[1]);
  EXPECT_EQ(resumed, have);
  EXPECT_NE(r.out.find(fmt::format("({} events sent", kTotal - have)), std::string::npos) << r.out;
  EXPECT_EQ(stop(c.pid), 0);
  expect_exactly(origin_seqs(cdb, "node-a"), kTotal);
  auto final_ack = store->kv_get(core::audit_ack_key(fmt::format("127.0.0.1:{}", c.port)));
  ASSERT_TRUE(final_ack.has_value() && final_ack->has_value());
  EXPECT_EQ(std::stoull(**final_ack), kTotal);
}

TEST(AuditStream, CollectorThatLostItsStoreGetsEverythingAgain) {
  // The hello tells the client where the collector really stands, not where it stood.
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db";
  node_store(db, 500);
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  pid_t push = testing::start(push_argv(db, c.port, {"--insecure", "--node", "node-a"}), dir + "/push.log");
  ASSERT_TRUE(wait_until([&] { return count_rows(cdb) == 100; }, 30s)) << read_file(dir + "/push.log");
  EXPECT_EQ(stop(c.pid), 0);
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(cdb + suffix);
  auto c2 = start_collector(dir, cdb, c.port);
  ASSERT_EQ(c2.port, c.port);
  EXPECT_TRUE(wait_until([&] { return count_rows(cdb) == 100; }, 30s)) << read_file(dir + "/push.log");
  EXPECT_EQ(stop(push), 0);
  EXPECT_EQ(stop(c2.pid), 0);
  EXPECT_NE(read_file(dir + "/push.log").find("the collector has seq 0 of node node-a but acknowledged 500 before"),
            std::string::npos)
      << read_file(dir + "/push.log");
  EXPECT_EQ(origin_seqs(cdb, "node-a").size(), 100u);
}

// A raw client: sends `batches` on one Push stream and returns the final status.
grpc::Status raw_push(int port, const std::vector<v1::EventBatch>& batches, std::vector<v1::Ack>* acks = nullptr) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  auto ch = grpc::CreateCustomChannel(fmt::format("127.0.0.1:{}", port), grpc::InsecureChannelCredentials(), args);
  auto stub = v1::AuditSink::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  auto rw = stub->Push(&ctx);
  v1::Ack ack;
  for (const auto& b : batches) {
    if (!rw->Write(b)) break;
    // Lock-step, so a rejection is attributed to the batch that caused it.
    if (!rw->Read(&ack)) break;
    if (acks) acks->push_back(ack);
  }
  rw->WritesDone();
  while (rw->Read(&ack))
    if (acks) acks->push_back(ack);
  return rw->Finish();
}

v1::EventBatch batch_of(const std::string& node, std::vector<uint64_t> seqs) {
  v1::EventBatch b;
  b.set_node(node);
  b.set_store_id("0123456789abcdef0123456789abcdef");
  for (auto s : seqs) {
    auto* e = b.add_events();
    *e = make_event(static_cast<int>(s), node, true);
    e->set_seq(s);
  }
  return b;
}

TEST(AuditStream, MalformedRequestsGetClearStatusCodes) {
  auto dir = testing::temp_dir();
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);

  auto expect_code = [&](std::vector<v1::EventBatch> bs, grpc::StatusCode code, const std::string& text) {
    auto st = raw_push(c.port, bs);
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_NE(st.error_message().find(text), std::string::npos) << st.error_message();
  };
  auto empty_node = batch_of("", {1});
  expect_code({empty_node}, grpc::INVALID_ARGUMENT, "node: empty");
  auto no_store = batch_of("n1", {1});
  no_store.clear_store_id();
  expect_code({no_store}, grpc::INVALID_ARGUMENT, "store_id: empty");
  auto no_seq = batch_of("n1", {1, 2});
  no_seq.mutable_events(1)->set_seq(0);
  expect_code({no_seq}, grpc::INVALID_ARGUMENT, "events[1].seq: 0");
  expect_code({batch_of("n1", {5, 4})}, grpc::INVALID_ARGUMENT, "seqs must increase");
  // 2^64-1 would be stored as -1 in SQLite's signed integer.
  expect_code({batch_of("n1", {1, UINT64_MAX})}, grpc::INVALID_ARGUMENT, "events[1].seq: 18446744073709551615 is beyond");
  expect_code({batch_of("n1", {1, 2}), batch_of("n1", {2})}, grpc::INVALID_ARGUMENT, "events[0].seq: 2 after 2");
  expect_code({batch_of("n1", {1}), batch_of("n2", {2})}, grpc::INVALID_ARGUMENT, "one stream, one node");
  std::vector<uint64_t> many(10001);
  for (size_t i = 0; i < many.size(); ++i) many[i] = i + 1;
  expect_code({batch_of("n1", many)}, grpc::INVALID_ARGUMENT, "10001 in one batch");
  // Above the message limit: gRPC itself refuses it, before our code sees it.
  auto huge = batch_of("n1", {1});
  huge.mutable_events(0)->mutable_violation()->set_what(std::string(5 << 20, 'x'));
  EXPECT_EQ(raw_push(c.port, {huge}).error_code(), grpc::RESOURCE_EXHAUSTED);
  // Not even HTTP/2: bytes straight on the socket.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(c.port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(4096, '\xff');
  EXPECT_GT(write(fd, junk.data(), junk.size()), 0);
  close(fd);

  // Nothing of the rejected batches was stored (only the valid batches that preceded a
  // rejection on their stream: n1 seq 1 and 2); the collector still serves good streams.
  EXPECT_TRUE(testing::pid_alive(c.pid));
  EXPECT_EQ(count_rows(cdb), 2u);
  EXPECT_EQ(count_rows(cdb, "origin_seq IN (4, 5) OR node != 'n1'"), 0u);
  std::vector<v1::Ack> acks;
  auto ok = raw_push(c.port, {batch_of("n1", {}), batch_of("n1", {1, 2, 3}), batch_of("n1", {7})}, &acks);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_EQ(acks[0].acked_seq(), 2u);  // the hello: where n1 stands
  EXPECT_EQ(acks[1].acked_seq(), 3u);
  EXPECT_EQ(acks[2].acked_seq(), 7u);
  EXPECT_EQ(acks[2].node(), "n1");
  EXPECT_EQ(count_rows(cdb), 4u);
  // A client the collector rejects gets the reason, and a one-shot push stops at once
  // instead of retrying what cannot succeed.
  auto db = dir + "/node.db";
  node_store(db, 10);
  auto t0 = std::chrono::steady_clock::now();
  auto r = run(push_argv(db, c.port, {"--insecure", "--once", "--node", "bad node", "--timeout", "60"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("rejected by the collector: the stream broke: INVALID_ARGUMENT: node: must be printable"),
            std::string::npos)
      << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);
  EXPECT_NE(read_file(c.log).find("rejecting a batch"), std::string::npos);
}

// A Push message gRPC cannot parse as an EventBatch ends the stream with a status that
// says so, not with OK as if the client had finished (a string field that is not UTF-8
// fails the parse; the C++ client serialises it anyway).
TEST(AuditStream, AnUnparseablePushMessageIsRefusedWithItsReason) {
  auto dir = testing::temp_dir();
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  std::vector<v1::Ack> acks;
  auto bad = batch_of("n1", {2});
  bad.set_store_id("\xff\xfe not utf-8");
  auto st = raw_push(c.port, {batch_of("n1", {1}), bad}, &acks);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("message 2 ("), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("is not an agentcage.v1.EventBatch"), std::string::npos) << st.error_message();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].acked_seq(), 1u);
  EXPECT_EQ(count_rows(cdb), 1u);
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);
}

// A node whose store fails tells the collector in-band (EventBatch.unstored): the Loss
// and the events without seq, kept in the collector's chain without an origin seq and
// outside the (node, store, seq) dedup; an unstored event with a seq is refused.
TEST(AuditStream, UnstoredEventsAreKeptWithoutOriginSeqAndVerify) {
  auto dir = testing::temp_dir();
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  auto told = batch_of("n1", {});
  auto* loss = told.add_unstored();
  loss->mutable_loss()->set_reason("store_full");
  loss->mutable_loss()->set_count(2);
  *told.add_unstored() = make_event(7, "n1", true);
  std::vector<v1::Ack> acks;
  auto st = raw_push(c.port, {batch_of("n1", {1, 2}), told, batch_of("n1", {3})}, &acks);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_EQ(acks[1].acked_seq(), 2u);  // unstored alone: where the collector stands
  EXPECT_EQ(acks[2].acked_seq(), 3u);
  EXPECT_EQ(count_rows(cdb, "origin_seq IS NULL AND node = 'n1'"), 2u);
  EXPECT_EQ(count_rows(cdb, "origin_seq IS NULL AND kind = 'loss'"), 1u);
  EXPECT_EQ(count_rows(cdb), 5u);
  // Told again (a reconnect): kept again, not taken for a replay of a stored event.
  st = raw_push(c.port, {told});
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(count_rows(cdb, "origin_seq IS NULL"), 4u);

  auto bad = batch_of("n1", {});
  *bad.add_unstored() = make_event(8, "n1", true);
  bad.mutable_unstored(0)->set_seq(9);
  st = raw_push(c.port, {bad});
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("unstored[0].seq: 9"), std::string::npos) << st.error_message();
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", cdb, "--chain-key", dir + "/collector.key"});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
}

// The collector's unary method: a request that does not parse gets INVALID_ARGUMENT
// naming the message, not gRPC's textless UNIMPLEMENTED.
TEST(AuditStream, AnUnparseableCheckpointsRequestIsRefusedWithItsReason) {
  auto dir = testing::temp_dir();
  auto c = start_collector(dir, dir + "/collector.db", 0);
  ASSERT_GT(c.port, 0);
  auto stub = v1::AuditSink::NewStub(
      grpc::CreateChannel(fmt::format("127.0.0.1:{}", c.port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  v1::CheckpointsRequest req;
  req.set_node("\xff\xfe not utf-8");
  v1::CheckpointsResponse resp;
  auto st = stub->Checkpoints(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("does not parse as agentcage.v1.CheckpointsRequest"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);
}

// The attack: an unauthenticated client pushes a forged history under a real node's
// name and store id; the real node then resumes after it, its events dropped as
// duplicates, and `push --once` used to report success. Now the node checks the
// collector's position against its own store and says what it found; the collector keeps
// the first history and records the conflicting one.
TEST(AuditStream, AForgedHistoryUnderANodesNameIsCaughtByTheNodeAndTheCollector) {
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db";
  auto store_id = node_store(db, 300)->store_id();
  auto forged = [&](std::vector<uint64_t> seqs) {
    auto b = batch_of("node-a", std::move(seqs));
    b.set_store_id(store_id);
    for (auto& e : *b.mutable_events()) e.mutable_violation()->set_what("nothing happened here");
    return b;
  };

  // 1. Forged seqs 1..10 that exist on the node with other content.
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0);
  ASSERT_GT(c.port, 0);
  EXPECT_NE(read_file(c.log).find("any node: unauthenticated"), std::string::npos) << read_file(c.log);
  auto st = raw_push(c.port, {forged({1, 2, 3, 4, 5, 6, 7, 8, 9, 10})});
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto r = run(push_argv(db, c.port, {"--insecure", "--once", "--node", "node-a", "--timeout", "30"}));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("ALREADY_EXISTS: events: seq 10 of node 'node-a' store " + store_id + " differs"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("acknowledged through seq 300"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(cdb, "1", "conflicts"), 1u);
  EXPECT_EQ(count_rows(cdb, "origin_seq > 10"), 0u);  // nothing of the real history after it
  EXPECT_EQ(stop(c.pid), 0);
  EXPECT_NE(read_file(c.log).find("1 conflicts"), std::string::npos) << read_file(c.log);

  // 2. A forged position beyond anything the node wrote.
  auto cdb2 = dir + "/collector2.db";
  auto c2 = start_collector(dir, cdb2, 0);
  ASSERT_GT(c2.port, 0);
  st = raw_push(c2.port, {forged({1000})});
  ASSERT_TRUE(st.ok()) << st.error_message();
  r = run(push_argv(db, c2.port, {"--insecure", "--once", "--node", "node-a", "--timeout", "30"}));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("the collector holds seq 1000 of node 'node-a' store " + store_id +
                       " but this store's head is seq 300"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(stop(c2.pid), 0);

  // 3. The genuine case still works: the same node resuming after its own events checks
  // the overlap and ships the rest.
  auto cdb3 = dir + "/collector3.db";
  auto c3 = start_collector(dir, cdb3, 0);
  ASSERT_GT(c3.port, 0);
  r = run(push_argv(db, c3.port, {"--insecure", "--once", "--node", "node-a", "--all"}));
  ASSERT_EQ(r.status, 0) << r.err;
  {
    auto s = core::EventStore::open(db, {});
    ASSERT_TRUE(s.has_value());
    std::vector<v1::Event> more;
    for (int i = 301; i <= 310; ++i) more.push_back(make_event(i, "node-a", true));
    ASSERT_TRUE((*s)->append_batch(more).has_value());
  }
  r = run(push_argv(db, c3.port, {"--insecure", "--once", "--node", "node-a", "--all"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("acknowledged through seq 310 (10 events sent"), std::string::npos) << r.out;
  EXPECT_EQ(count_rows(cdb3), 310u);
  EXPECT_EQ(count_rows(cdb3, "1", "conflicts"), 0u);
  EXPECT_EQ(stop(c3.pid), 0);
}

TEST(AuditStream, MutualTlsAdmitsOnlyCertifiedNodes) {
  auto dir = testing::temp_dir();
  auto sh = [&](const std::string& cmd) {
    auto r = run({"sh", "-c", "cd " + dir + " && " + cmd});
    ASSERT_EQ(r.status, 0) << cmd << "\n" << r.err;
  };
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  sh("openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -days 1 -subj /CN=agentcage-test-ca 2>/dev/null");
  sh("openssl req " + ec + " -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null");
  sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext && openssl x509 -req -in server.csr -CA "
     "ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null");
  sh("openssl req " + ec + " -keyout client.key -out client.csr -subj /CN=node-a 2>/dev/null");
  sh("printf 'extendedKeyUsage=clientAuth\\n' > client.ext && openssl x509 -req -in client.csr -CA ca.pem -CAkey "
     "ca.key -CAcreateserial -out client.pem -days 1 -extfile client.ext 2>/dev/null");

  auto db = dir + "/node.db";
  node_store(db, 50);
  auto cdb = dir + "/collector.db";
  auto c = start_collector(dir, cdb, 0,
                           {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key", "--tls-client-ca",
                            dir + "/ca.pem"});
  ASSERT_GT(c.port, 0);
  EXPECT_NE(read_file(c.log).find("(mtls)"), std::string::npos);

  // No client certificate: the handshake fails, nothing is stored, the push says why.
  auto r = run(push_argv(db, c.port, {"--ca", dir + "/ca.pem", "--server-name", "localhost", "--once", "--timeout", "3"}));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.err.find("timed out: acknowledged through seq 0 of 50"), std::string::npos) << r.err;
  // Plaintext against TLS: refused as well.
  r = run(push_argv(db, c.port, {"--insecure", "--once", "--timeout", "3"}));
  EXPECT_EQ(r.status, 1) << r.out;
  // A certificate from a CA the client does not trust for the server: refused.
  r = run(push_argv(db, c.port, {"--ca", dir + "/client.pem", "--cert", dir + "/client.pem", "--key",
                                 dir + "/client.key", "--server-name", "localhost", "--once", "--timeout", "3"}));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_EQ(count_rows(cdb), 0u);

  // A certified node may not speak for another node.
  r = run(push_argv(db, c.port, {"--ca", dir + "/ca.pem", "--cert", dir + "/client.pem", "--key", dir + "/client.key",
                                 "--server-name", "localhost", "--once", "--node", "node-b"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("PERMISSION_DENIED: node: 'node-b' is not a name in the client certificate (node-a)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(count_rows(cdb), 0u);

  r = run(push_argv(db, c.port, {"--ca", dir + "/ca.pem", "--cert", dir + "/client.pem", "--key", dir + "/client.key",
                                 "--server-name", "localhost", "--once", "--node", "node-a"}));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_rows(cdb), 10u);
  EXPECT_EQ(stop(c.pid), 0);

  // Server-only TLS: refused unless the operator accepts unauthenticated nodes; then any
  // node that trusts the collector's CA may push.
  auto tdb = dir + "/tls-collector.db";
  auto refused = run({AGENTCAGE_BIN, "collector", "--listen", "127.0.0.1:0", "--db", tdb, "--chain-key",
                      dir + "/collector.key", "--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key"});
  EXPECT_EQ(refused.status, 2);
  EXPECT_NE(refused.err.find("no client authentication"), std::string::npos) << refused.err;
  auto t = start_collector(dir, tdb, 0,
                           {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key",
                            "--insecure-accept-any-node"});
  ASSERT_GT(t.port, 0);
  EXPECT_NE(read_file(t.log).find("(tls, any node: unauthenticated)"), std::string::npos);
  r = run(push_argv(db, t.port, {"--ca", dir + "/ca.pem", "--server-name", "localhost", "--once", "--all"}));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_rows(tdb), 50u);
  // The name in the certificate is checked: another expected name is refused.
  r = run(push_argv(db, t.port, {"--ca", dir + "/ca.pem", "--server-name", "evil.example", "--once", "--timeout", "3"}));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_EQ(stop(t.pid), 0);

  // Bad paths are named before anything connects.
  r = run(push_argv(db, c.port, {"--ca", dir + "/nope.pem", "--once"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("nope.pem"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace agentcage

namespace agentcage {
namespace {

// The node's signed heads reach the collector with the stream, and `audit verify
// --against` checks a node store against them: the real collector process, the real push
// client, the CLI; the intruder works on copies of the store with SQLite.
TEST(AuditAnchors, CollectorCheckpointsCatchTruncationRechainAndHeadDeletion) {
  auto dir = testing::temp_dir();
  auto db = dir + "/node.db", key = dir + "/node.key";
  {
    core::StoreOptions o;
    o.chain_key_path = key;
    o.create_chain_key = true;
    auto s = core::EventStore::open(db, o);
    ASSERT_TRUE(s.has_value()) << s.error().message();
    std::vector<v1::Event> evs;
    for (int i = 1; i <= 60; ++i) evs.push_back(make_event(i, "node-a", i % 5 == 0));
    ASSERT_TRUE((*s)->append_batch(evs).has_value());
  }
  auto c = start_collector(dir, dir + "/collector.db", 0);
  ASSERT_GT(c.port, 0);
  auto ep = fmt::format("127.0.0.1:{}", c.port);
  auto p = run(push_argv(db, c.port, {"--insecure", "--once", "--node", "node-a", "--chain-key", key}));
  ASSERT_EQ(p.status, 0) << p.err << p.out;
  auto verify = [&](const std::string& store) {
    return run({AGENTCAGE_BIN, "audit", "verify", "--db", store, "--chain-key", key, "--against", ep, "--insecure",
                "--node", "node-a"});
  };
  auto v = verify(db);
  ASSERT_EQ(v.status, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("anchored: "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("the newest at seq 60\n"), std::string::npos) << v.out;

  auto copy = [&](const std::string& name) {
    std::filesystem::copy_file(db, dir + "/" + name);
    return dir + "/" + name;
  };
  auto t = copy("truncated.db");
  testing::StoreFile(t).truncate_after(45);
  v = verify(t);
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_EQ(v.out.rfind("BROKEN at seq 46: truncated: ", 0), 0u) << v.out;

  auto r = copy("rechained.db");
  auto secret = core::load_chain_keys(key)->current().secret;
  testing::StoreFile(r).rechain(10, secret, [](uint64_t seq, v1::Event& ev) {
    if (seq == 10) ev.mutable_violation()->set_what("connect 10.0.0.1:53/udp");
  });
  EXPECT_EQ(run({AGENTCAGE_BIN, "audit", "verify", "--db", r, "--chain-key", key}).status, 0);
  v = verify(r);
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("re-chained: row seq 60"), std::string::npos) << v.out;

  auto h = copy("headless.db");
  testing::StoreFile(h).delete_head_through(20);
  v = verify(h);
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("deleted: seq 1..20 are gone"), std::string::npos) << v.out;

  // A checkpoint file works the same way, offline.
  auto cpf = dir + "/cp.json";
  ASSERT_EQ(run({AGENTCAGE_BIN, "audit", "checkpoint", "--db", db, "--chain-key", key, "--output", cpf}).status, 0);
  v = run({AGENTCAGE_BIN, "audit", "verify", "--db", t, "--chain-key", key, "--checkpoint", cpf});
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("truncated"), std::string::npos) << v.out;
  EXPECT_EQ(stop(c.pid), 0) << read_file(c.log);
}

}  // namespace
}  // namespace agentcage
