// SPDX-License-Identifier: Apache-2.0
// One unprivileged user cannot grow agentcaged or exhaust what all share: past
// --max-subscribers-per-user live Subscribe streams (issue 15 item 3) or
// --max-sandboxes-per-user running sandboxes (issue 11 item 5) the next request is
// RESOURCE_EXHAUSTED naming the limit; what ends gives its place back; root is not bounded.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <string>
#include <vector>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::read_all;

TEST(SubscriberLimits, AUserHoldsAtMostTheConfiguredStreams) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
  testing::DaemonProcess d;
  ASSERT_EQ(d.start({"--max-subscribers-per-user", "3"}), "");
  auto follow = [&](bool nobody, const std::string& out) {
    std::vector<std::string> argv{AGENTCAGE_BIN, "events", "-f", "--socket", d.socket()};
    return testing::start(nobody ? testing::as_nobody(argv) : argv, out);
  };
  // A stream is live once the daemon logs nothing against it and it still runs.
  std::vector<pid_t> held;
  for (int i = 0; i < 3; ++i) held.push_back(follow(true, d.dir() + "/s" + std::to_string(i)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (pid_t p : held) EXPECT_TRUE(testing::pid_alive(p));
  std::string refused = d.dir() + "/refused";
  pid_t fourth = follow(true, refused);
  EXPECT_EQ(testing::wait_status(fourth), 1);
  EXPECT_NE(read_all(refused).find("RESOURCE_EXHAUSTED"), std::string::npos) << read_all(refused);
  EXPECT_NE(read_all(refused).find("--max-subscribers-per-user"), std::string::npos) << read_all(refused);
  // Root is not counted against it.
  pid_t root = follow(false, d.dir() + "/root");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(testing::pid_alive(root));
  // One ends: its place is free again.
  kill(held.back(), SIGTERM);
  testing::wait_status(held.back());
  held.pop_back();
  EXPECT_TRUE(testing::wait_until(
      [&] {
        std::string again = d.dir() + "/again";
        pid_t p = follow(true, again);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        bool live = testing::pid_alive(p);
        if (live) held.push_back(p);
        else testing::wait_status(p);
        return live;
      },
      std::chrono::seconds(5)));
  for (pid_t p : held) {
    kill(p, SIGTERM);
    testing::wait_status(p);
  }
  kill(root, SIGTERM);
  testing::wait_status(root);
  EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST(SandboxLimits, AUserRunsAtMostTheConfiguredSandboxes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
  testing::DaemonProcess d;
  ASSERT_EQ(d.start({"--max-sandboxes-per-user", "2"}), "");
  auto runner = [&](bool nobody, const std::string& out, const std::string& cmd) {
    std::vector<std::string> argv{AGENTCAGE_BIN, "run", "--socket", d.socket(), "--", "/bin/sh", "-c", cmd};
    return testing::start(nobody ? testing::as_nobody(argv) : argv, out);
  };
  std::vector<pid_t> held;
  for (int i = 0; i < 2; ++i) {
    std::string out = d.dir() + "/held" + std::to_string(i);
    held.push_back(runner(true, out, "echo ready; sleep 30"));
    ASSERT_TRUE(testing::wait_until([&] { return read_all(out).find("ready") != std::string::npos; },
                                    std::chrono::seconds(20)));
  }
  std::string refused = d.dir() + "/refused";
  EXPECT_EQ(testing::wait_status(runner(true, refused, "echo ran")), 1);
  EXPECT_EQ(read_all(refused).find("ran"), std::string::npos);
  EXPECT_NE(read_all(refused).find("RESOURCE_EXHAUSTED"), std::string::npos) << read_all(refused);
  EXPECT_NE(read_all(refused).find("--max-sandboxes-per-user 2"), std::string::npos) << read_all(refused);
  // Root is not counted against it.
  std::string root = d.dir() + "/root";
  EXPECT_EQ(testing::wait_status(runner(false, root, "echo ran")), 0) << read_all(root);
  // One ends: its place is free again.
  kill(held.back(), SIGTERM);
  testing::wait_status(held.back());
  held.pop_back();
  std::string again = d.dir() + "/again";
  EXPECT_TRUE(testing::wait_until(
      [&] { return testing::wait_status(runner(true, again, "echo ran")) == 0; }, std::chrono::seconds(5)))
      << read_all(again);
  for (pid_t p : held) {
    kill(p, SIGTERM);
    testing::wait_status(p);
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace agentcage
