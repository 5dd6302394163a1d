// SPDX-License-Identifier: Apache-2.0
// The sandbox's pid namespace (`process.namespaces: [pid]`, in base.yaml): the agent runs
// under agentcage's init as pid 1, sees only its own processes, and nothing of the
// sandbox outlives its launcher, however the launcher ends (SIGKILL included).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::processes_with;
using testing::read_all;
using testing::run;

// The cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
std::string cgroup2_root() {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, rest;
  while (in >> dev >> dir >> type && std::getline(in, rest))
    if (type == "cgroup2") return dir;
  return "/sys/fs/cgroup";
}

// The sandbox cgroups that exist now (<cgroup2>/agentcage/<id>).
std::set<std::string> sandbox_cgroups() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(cgroup2_root() + "/agentcage", ec))
    if (e.is_directory()) out.insert(e.path().string());
  return out;
}

class PidNamespace : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: pid namespaces, cgroups, BPF";
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
    ws_ = dir_ + "/ws";
    ASSERT_EQ(mkdir(ws_.c_str(), 0755), 0);
  }
  std::vector<std::string> run_default() {
    return {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db", "--profile", "default", "--workspace", ws_};
  }
  std::string dir_, ws_;
};

TEST_F(PidNamespace, TheAgentIsPid2UnderAgentcagesInitAndSeesOnlyItsOwnProcesses) {
  auto argv = run_default();
  // $$ is the agent (the init is 1); the sandbox's own procfs lists the namespace only.
  argv.insert(argv.end(), {"--", "sh", "-c", "echo pid=$$; ls /proc | grep -c '^[0-9]'; sleep 0.2 & wait"});
  auto r = run(argv);
  ASSERT_EQ(r.status, 0) << r.err;
  auto l = testing::lines(r.out);
  ASSERT_EQ(l.size(), 2u) << r.out;
  EXPECT_EQ(l[0], "pid=2") << r.out;
  // init, sh, ls, grep, sleep: a handful, where the host has hundreds.
  EXPECT_LE(std::stoi(l[1]), 6) << r.out;
  // The sandbox's record says what applied it.
  auto rec = run({AGENTCAGE_BIN, "events", "--db", dir_ + "/audit.db", "--kind", "sandbox"});
  EXPECT_NE(rec.out.find("namespaces: ipc uts pid (agentcage init as pid 1)"), std::string::npos) << rec.out << rec.err;
}

TEST_F(PidNamespace, SigkillOfTheLauncherEndsEveryProcessAndTheCgroupWithinASecond) {
  std::string token = dir_ + "/token";
  std::string out = dir_ + "/run.out";
  auto before = sandbox_cgroups();
  auto argv = run_default();
  // A background child and a foreground loop, both named by the token.
  argv.insert(argv.end(), {"--", "sh", "-c",
                           "sh -c 'while :; do sleep 0.1; done # " + token + "' & echo ready; while :; do sleep 0.1; done # " + token});
  pid_t launcher = testing::start(argv, out);
  ASSERT_TRUE(testing::wait_until([&] { return read_all(out).find("ready") != std::string::npos; },
                                  std::chrono::seconds(20)))
      << read_all(out);
  ASSERT_TRUE(testing::wait_until([&] { return processes_with(token).size() >= 2; }, std::chrono::seconds(5)));
  auto during = sandbox_cgroups();
  std::set<std::string> ours;
  for (const auto& c : during)
    if (!before.count(c)) ours.insert(c);
  ASSERT_FALSE(ours.empty()) << "no sandbox cgroup appeared";
  ASSERT_EQ(kill(launcher, SIGKILL), 0);
  EXPECT_EQ(testing::wait_status(launcher), 128 + SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  bool gone = testing::wait_until([&] { return processes_with(token).empty(); }, std::chrono::seconds(1));
  EXPECT_TRUE(gone) << processes_with(token).size() << " sandbox processes outlived the launcher";
  bool removed = testing::wait_until(
      [&] {
        for (const auto& c : ours)
          if (std::filesystem::exists(c)) return false;
        return true;
      },
      std::chrono::seconds(1) - std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0));
  EXPECT_TRUE(removed) << "the sandbox cgroup outlived its launcher: " << *ours.begin();
  for (pid_t p : processes_with(token)) kill(p, SIGKILL);
}

TEST_F(PidNamespace, WhatTheAgentLeftRunningEndsWithItAndItsStatusIsRuns) {
  std::string token = dir_ + "/bg";
  auto argv = run_default();
  argv.insert(argv.end(), {"--", "sh", "-c", "sh -c 'sleep 1000 # " + token + "' & exit 7"});
  auto r = run(argv);
  EXPECT_EQ(r.status, 7) << r.err;
  EXPECT_TRUE(testing::wait_until([&] { return processes_with(token).empty(); }, std::chrono::seconds(1)));
  // Killed by a signal from within: 128+N, as without a namespace.
  argv = run_default();
  argv.insert(argv.end(), {"--", "sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(run(argv).status, 128 + SIGTERM);
  // The command that does not exist: 127, named, through the init too.
  argv = run_default();
  argv.insert(argv.end(), {"--", "/usr/bin/agentcage-no-such-cmd"});
  r = run(argv);
  EXPECT_EQ(r.status, 127) << r.err;
  EXPECT_NE(r.err.find("agentcage-no-such-cmd"), std::string::npos) << r.err;
}

// The init is agentcage's own: the record shows the command as the launcher's child,
// with no event of the init's between them.
TEST_F(PidNamespace, TheRecordNamesTheCommandAsTheLaunchersChild) {
  auto argv = run_default();
  argv.insert(argv.end(), {"--", "/bin/true"});
  auto r = run(argv);
  ASSERT_EQ(r.status, 0) << r.err;
  auto ev = run({AGENTCAGE_BIN, "events", "--db", dir_ + "/audit.db", "--kind", "exec"});
  ASSERT_EQ(ev.status, 0) << ev.err;
  // The launcher is the process whose exec_id the exec names as parent: the one that
  // forked into the sandbox (the fork record, made by agentcage's own binary).
  std::string launcher_exec_id, parent_exec_id;
  auto field = [](const std::string& line, const std::string& name) {
    auto at = line.find("\"" + name + "\":\"");
    if (at == std::string::npos) return std::string();
    at += name.size() + 4;
    return line.substr(at, line.find('"', at) - at);
  };
  for (const auto& line : testing::lines(ev.out))
    if (line.find("\"filename\":\"/bin/true\"") != std::string::npos) parent_exec_id = field(line, "parent_exec_id");
  auto all = run({AGENTCAGE_BIN, "events", "--db", dir_ + "/audit.db"});
  ASSERT_EQ(all.status, 0) << all.err;
  int init_events = 0;
  for (const auto& line : testing::lines(all.out)) {
    if (line.find("\"fork\"") != std::string::npos && line.find("\"sandbox_id\"") != std::string::npos)
      launcher_exec_id = field(line, "exec_id");
    // Nothing recorded of a process of the sandbox that never exec'd: the init, the setup.
    if (line.find("\"sandbox_id\"") != std::string::npos && line.find("\"fork\"") == std::string::npos &&
        line.find("\"phase\"") == std::string::npos && field(line, "binary") != "/usr/bin/true")
      ++init_events;
  }
  ASSERT_FALSE(parent_exec_id.empty()) << ev.out;
  EXPECT_EQ(parent_exec_id, launcher_exec_id) << all.out;
  EXPECT_EQ(init_events, 0) << all.out;
}

}  // namespace
}  // namespace agentcage
