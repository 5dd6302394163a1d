// SPDX-License-Identifier: Apache-2.0
// The daemon's audit path on the real kernel: agentcaged records host-wide, keeps every
// event in its hash-chained store and streams it to a real `agentcage collector` process
// over loopback. A marker process we run must show up in both stores, identical.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "core/store.h"
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
  pid_t coll = testing::start({AGENTCAGE_BIN, "collector", "--listen", "127.0.0.1:0", "--db", cdb, "--insecure"},
                              dir + "/collector.log");
  int port = 0;
  for (int i = 0; i < 200 && !port; ++i) {
    std::smatch m;
    std::string text = slurp(dir + "/collector.log");
    if (std::regex_search(text, m, std::regex("listening on 127\\.0\\.0\\.1:([0-9]+)"))) port = std::stoi(m[1]);
    else std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(port, 0) << slurp(dir + "/collector.log");

  pid_t daemon = testing::start({AGENTCAGED_BIN, "--audit-db", ddb, "--audit-endpoint",
                                 fmt::format("127.0.0.1:{}", port), "--audit-insecure", "--audit-all", "--monitor", "host",
                                 "--socket", dir + "/agentcage.sock"},
                                dir + "/daemon.log");
  std::string marker = fmt::format("agentcage-audit-marker-{}", getpid());
  bool arrived = false;
  for (int i = 0; i < 150 && !arrived; ++i) {  // the daemon needs a moment to load its programs
    ASSERT_TRUE(testing::pid_alive(daemon)) << slurp(dir + "/daemon.log");
    testing::run({"/bin/echo", marker});
    std::this_thread::sleep_for(200ms);
    arrived = !marker_execs(cdb, marker).empty();
  }
  ASSERT_TRUE(arrived) << slurp(dir + "/daemon.log").substr(0, 4000);
  kill(daemon, SIGTERM);
  EXPECT_EQ(testing::wait_status(daemon), 0) << slurp(dir + "/daemon.log").substr(0, 4000);
  kill(coll, SIGTERM);
  EXPECT_EQ(testing::wait_status(coll), 0);

  auto local = marker_execs(ddb, marker), remote = marker_execs(cdb, marker);
  ASSERT_FALSE(local.empty());
  ASSERT_FALSE(remote.empty());
  EXPECT_EQ(core::canonical_bytes(remote[0]), core::canonical_bytes(local[0]));  // same seq, same bytes
  EXPECT_EQ(local[0].node(), remote[0].node());
  for (const auto& db : {ddb, cdb}) {
    auto v = testing::run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
    EXPECT_EQ(v.status, 0) << db << ": " << v.out << v.err;
    EXPECT_EQ(v.out.rfind("OK: ", 0), 0u) << v.out;
  }
}

}  // namespace
}  // namespace agentcage
