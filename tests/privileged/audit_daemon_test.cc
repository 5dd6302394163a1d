// SPDX-License-Identifier: Apache-2.0
// The daemon's audit path on the real kernel: agentcaged records host-wide, keeps every
// event in its hash-chained store and streams it to a real `agentcage collector` process
// over loopback. A marker process we run must show up in both stores, identical.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "core/store/store.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The exec events of `marker` in a store (read-only; the writer may be running).
std::vector<v1::Event> marker_execs(const std::string& db, const std::string& marker) {
  std::vector<v1::Event> out;
  core::StoreOptions o;
  o.read_only = true;
  auto s = core::EventStore::open(db, o);
  if (!s) return out;
  core::StoreQuery q;
  q.kinds = {"exec"};
  (void)(*s)->query(q, [&](const v1::Event& e) {
    for (const auto& a : e.process().argv())
      if (a == marker) out.push_back(e);
    return true;
  });
  return out;
}

TEST(AuditDaemon, HostEventsReachTheStoreAndTheCollector) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
  auto dir = testing::temp_dir();
  auto cdb = dir + "/collector.db", ddb = dir + "/audit.db";
  auto node_key = dir + "/node.key", coll_key = dir + "/collector.key";
  pid_t coll = testing::start(
      {AGENTCAGE_BIN, "collector", "--listen", "127.0.0.1:0", "--db", cdb, "--insecure", "--insecure-accept-any-node", "--chain-key", coll_key},
      dir + "/collector.log");
  int port = 0;
  for (int i = 0; i < 200 && !port; ++i) {
    std::smatch m;
    std::string text = slurp(dir + "/collector.log");
    if (std::regex_search(text, m, std::regex("listening on 127\\.0\\.0\\.1:([0-9]+)"))) port = std::stoi(m[1]);
    else std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(port, 0) << slurp(dir + "/collector.log");

  std::vector<std::string> argv{AGENTCAGED_BIN, "--audit-db", ddb, "--audit-endpoint",
                                fmt::format("127.0.0.1:{}", port), "--audit-insecure", "--audit-all", "--monitor", "host",
                                "--socket", dir + "/agentcage.sock", "--chain-key", node_key};
  for (auto& a : testing::daemon_state_args(dir)) argv.push_back(a);
  pid_t daemon = testing::start(argv, dir + "/daemon.log");
  std::string marker = fmt::format("agentcage-audit-marker-{}", getpid());
  bool arrived = false;
  for (int i = 0; i < 150 && !arrived; ++i) {  // the daemon needs a moment to load its programs
    ASSERT_TRUE(testing::pid_alive(daemon)) << slurp(dir + "/daemon.log");
    testing::run({"/bin/echo", marker});
    std::this_thread::sleep_for(200ms);
    arrived = !marker_execs(cdb, marker).empty();
  }
  ASSERT_TRUE(arrived) << slurp(dir + "/daemon.log").substr(0, 4000);
  // The daemon's stream carried signed heads; the node store checks out against them
  // while the daemon goes on writing.
  auto anchored = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", ddb, "--chain-key", node_key, "--against",
                                fmt::format("127.0.0.1:{}", port), "--insecure"});
  EXPECT_EQ(anchored.status, 0) << anchored.out << anchored.err;
  EXPECT_NE(anchored.out.find("keyed (key id "), std::string::npos) << anchored.out;
  EXPECT_NE(anchored.out.find("anchored: "), std::string::npos) << anchored.out;
  kill(daemon, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon), 0) << slurp(dir + "/daemon.log").substr(0, 4000);
  kill(coll, SIGTERM);
  EXPECT_EQ(testing::wait_status(coll), 0);

  auto local = marker_execs(ddb, marker), remote = marker_execs(cdb, marker);
  ASSERT_FALSE(local.empty());
  ASSERT_FALSE(remote.empty());
  EXPECT_EQ(core::canonical_bytes(remote[0]), core::canonical_bytes(local[0]));  // same seq, same bytes
  EXPECT_EQ(local[0].node(), remote[0].node());
  for (const auto& [db, key] : {std::pair{ddb, node_key}, std::pair{cdb, coll_key}}) {
    auto v = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", db, "--chain-key", key});
    EXPECT_EQ(v.status, 0) << db << ": " << v.out << v.err;
    EXPECT_EQ(v.out.rfind("OK: ", 0), 0u) << v.out;
  }
}

// Issue 5: an unprivileged `run --profile` through agentcaged; its Landlock and seccomp
// denials (attributed by the daemon) are streamed to the collector like any violation.
TEST(AuditDaemon, UnprivilegedProfileViolationsReachTheCollector) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
  auto dir = testing::temp_dir();
  chmod(dir.c_str(), 0755);
  for (std::string p = AGENTCAGE_BIN; p.size() > 1; p = p.substr(0, p.rfind('/'))) {
    struct stat st;
    if (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) chmod(p.c_str(), st.st_mode | 0005);
  }
  std::string ws = dir + "/ws";
  ASSERT_EQ(mkdir(ws.c_str(), 0755), 0);
  passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  ASSERT_EQ(chown(ws.c_str(), pw->pw_uid, pw->pw_gid), 0);
  auto cdb = dir + "/collector.db", ddb = dir + "/audit.db", sock = dir + "/agentcage.sock";
  auto node_key = dir + "/node.key", coll_key = dir + "/collector.key";
  pid_t coll = testing::start(
      {AGENTCAGE_BIN, "collector", "--listen", "127.0.0.1:0", "--db", cdb, "--insecure", "--insecure-accept-any-node", "--chain-key", coll_key},
      dir + "/collector.log");
  int port = 0;
  for (int i = 0; i < 200 && !port; ++i) {
    std::smatch m;
    std::string text = slurp(dir + "/collector.log");
    if (std::regex_search(text, m, std::regex("listening on 127\\.0\\.0\\.1:([0-9]+)"))) port = std::stoi(m[1]);
    else std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(port, 0) << slurp(dir + "/collector.log");
  std::vector<std::string> argv{AGENTCAGED_BIN, "--audit-db", ddb, "--audit-endpoint", fmt::format("127.0.0.1:{}", port),
                                "--audit-insecure", "--socket", sock, "--chain-key", node_key};
  for (auto& a : testing::daemon_state_args(dir)) argv.push_back(a);
  pid_t daemon = testing::start(argv, dir + "/daemon.log");
  for (int i = 0; i < 500 && access(sock.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(access(sock.c_str(), F_OK), 0) << slurp(dir + "/daemon.log");
  std::string outside = fmt::format("/srv/agentcage-dprof-audit-{}.txt", getpid());
  { std::ofstream(outside) << "x\n"; }
  chmod(outside.c_str(), 0644);
  std::string cmd = fmt::format("'{}' run --socket '{}' --profile default --workspace '{}' -- sh -c 'cat {}; unshare -U true; exit 4'",
                                AGENTCAGE_BIN, sock, ws, outside);
  auto r = testing::run({"su", "nobody", "-s", "/bin/sh", "-c", cmd});
  unlink(outside.c_str());
  EXPECT_EQ(r.status, 4) << r.err;

  auto mechanisms = [&] {
    std::set<std::string> out;
    core::StoreOptions o;
    o.read_only = true;
    auto s = core::EventStore::open(cdb, o);
    if (!s) return out;
    core::StoreQuery q;
    (void)(*s)->query(q, [&](const v1::Event& e) {
      if (e.has_violation() && e.process().uid() == pw->pw_uid &&
          (e.violation().what().find(outside) != std::string::npos || e.violation().what() == "syscall unshare"))
        out.insert(e.violation().mechanism());
      return true;
    });
    return out;
  };
  std::set<std::string> seen;
  for (int i = 0; i < 150 && seen.size() < 2; ++i) {
    std::this_thread::sleep_for(100ms);
    seen = mechanisms();
  }
  // The file outside the profile is absent from the view the daemon starts the command in.
  EXPECT_EQ(seen, (std::set<std::string>{"mount-mask", "seccomp"})) << slurp(dir + "/daemon.log").substr(0, 4000);
  kill(daemon, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon), 0);
  // The node store has the sandbox's record: who, which profile, and the exit status its
  // client reported when it closed it.
  {
    core::StoreOptions o;
    o.read_only = true;
    o.chain_key_path = node_key;
    auto s = core::EventStore::open(ddb, o);
    ASSERT_TRUE(s.has_value());
    core::StoreQuery q;
    q.kinds = {"sandbox"};
    std::vector<v1::SandboxChange> recs;
    ASSERT_TRUE((*s)->query(q, [&](const v1::Event& e) {
                     if (e.sandbox().sandbox().owner_uid() == pw->pw_uid) recs.push_back(e.sandbox());
                     return true;
                   }).has_value());
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0].phase(), "created");
    EXPECT_EQ(recs[0].sandbox().profile(), "default");
    EXPECT_EQ(recs[0].profile_digest().size(), 64u);
    EXPECT_FALSE(recs[0].resolved_profile().empty());
    EXPECT_EQ(recs[1].phase(), "closed");
    EXPECT_TRUE(recs[1].exit_known());
    EXPECT_EQ(recs[1].exit_status(), 4);
  }
  kill(coll, SIGTERM);
  EXPECT_EQ(testing::wait_status(coll), 0);
}

}  // namespace
}  // namespace agentcage
