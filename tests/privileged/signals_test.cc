// SPDX-License-Identifier: Apache-2.0
// Signals and exit status of `agentcage run` on every path: in-process (with the audit
// store, with a profile), through agentcaged as root and as user nobody. The signal goes
// to the agentcage process itself, as a terminal, a supervisor or `timeout` would send it,
// and must reach the agent, whose own exit status `run` then returns.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::read_all;
using testing::run;
using testing::wait_until;

// Each forwarded signal, trapped by the agent with its own exit code.
struct Trapped {
  int sig;
  const char* name;
  int code;
};
constexpr Trapped kSignals[] = {
    {SIGTERM, "TERM", 55}, {SIGINT, "INT", 56}, {SIGHUP, "HUP", 57}, {SIGQUIT, "QUIT", 58}, {SIGWINCH, "WINCH", 59}};

// The agent: traps every forwarded signal, says it is ready, and waits. (sh runs a trap
// once the sleep in the foreground ends: within 0.1 s.)
std::string trapping_agent() {
  std::string s;
  for (const auto& t : kSignals) s += "trap 'exit " + std::to_string(t.code) + "' " + t.name + "; ";
  return s + "echo ready; while :; do sleep 0.1; done";
}

// Shell-style status of `pid`, or -2 if it has not exited within `timeout` (then killed).
int wait_or_kill(pid_t pid, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int ws = 0;
    pid_t w = waitpid(pid, &ws, WNOHANG);
    if (w == pid) return WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
    if (w < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Whether a process whose command line contains `token` still runs.
bool process_with(const std::string& token) { return !testing::processes_with(token).empty(); }

class Signals : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs, creates cgroups";
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
  }

  // Starts `argv` (agentcage itself, or setpriv exec'ing it: the same pid), waits until
  // the agent printed "ready", sends `sig` to that pid and returns its exit status.
  // `*out` gets everything it printed.
  int signal_run(const std::vector<std::string>& argv, int sig, std::string* out) {
    std::string file = dir_ + "/run" + std::to_string(++runs_) + ".out";
    pid_t pid = testing::start(argv, file);
    bool ready = false;
    for (int i = 0; i < 1000 && !ready; ++i) {
      ready = read_all(file).find("ready\n") != std::string::npos;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ready) kill(pid, sig);
    int st = wait_or_kill(pid, std::chrono::seconds(ready ? 10 : 1));
    *out = read_all(file);
    return ready ? st : -3;
  }

  // Every forwarded signal, one run each: `prefix` + the trapping agent.
  void expect_every_signal_reaches_the_agent(const std::vector<std::string>& prefix) {
    for (const auto& t : kSignals) {
      auto argv = prefix;
      for (std::string a : {"--", "sh", "-c"}) argv.push_back(a);
      argv.push_back(trapping_agent());
      std::string out;
      EXPECT_EQ(signal_run(argv, t.sig, &out), t.code) << "SIG" << t.name << " (-3: never ready, -2: hung)\n" << out;
    }
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(Signals, ReachTheAgentInProcessWithTheAuditStore) {
  expect_every_signal_reaches_the_agent({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db"});
  // The store recorded the runs: the launcher did not die before writing them.
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", dir_ + "/audit.db"});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
}

TEST_F(Signals, ReachTheAgentInProcessUnderTheDefaultProfile) {
  std::string ws = dir_ + "/ws";
  ASSERT_EQ(mkdir(ws.c_str(), 0755), 0);
  expect_every_signal_reaches_the_agent(
      {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db", "--profile", "default", "--workspace", ws});
}

TEST_F(Signals, ReachTheAgentThroughTheDaemonAsRoot) {
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  expect_every_signal_reaches_the_agent({AGENTCAGE_BIN, "run", "--socket", d.socket()});
  EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(Signals, ReachTheAgentThroughTheDaemonAsNobody) {
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  expect_every_signal_reaches_the_agent(testing::as_nobody({AGENTCAGE_BIN, "run", "--socket", d.socket()}));
  EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(Signals, AnAgentKilledBySignalNMakesRunReturn128PlusN) {
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  int path = 0;
  for (const auto& prefix : std::vector<std::vector<std::string>>{
           {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db"},
           {AGENTCAGE_BIN, "run", "--socket", d.socket()},
           testing::as_nobody({AGENTCAGE_BIN, "run", "--socket", d.socket()})}) {
    // Forwarded and not trapped: the agent dies of it. The comment in its script names
    // this test's directory and the path: no other process has that in its command line.
    std::string token = dir_ + "/path" + std::to_string(++path);
    auto argv = prefix;
    argv.insert(argv.end(), {"--", "sh", "-c", "echo ready; while :; do sleep 0.1; done # " + token});
    std::string out;
    EXPECT_EQ(signal_run(argv, SIGTERM, &out), 128 + SIGTERM) << join(prefix) << "\n" << out;
    // 143 because the agent died of it, not the launcher: the agent is gone too.
    bool left = true;
    for (int i = 0; i < 100 && left; ++i) {
      left = process_with(token);
      if (left) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_FALSE(left) << join(prefix) << ": the agent outlived `run`";
    // Killed from within.
    argv = prefix;
    argv.insert(argv.end(), {"--", "sh", "-c", "kill -KILL $$"});
    auto r = run(argv);
    EXPECT_EQ(r.status, 128 + SIGKILL) << join(prefix) << "\n" << r.err;
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// The clean start: nothing blocked or ignored that the launcher blocks or ignores itself.
TEST_F(Signals, TheAgentStartsWithNoSignalBlockedOrIgnored) {
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  for (const auto& prefix : std::vector<std::vector<std::string>>{
           {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db"},
           {AGENTCAGE_BIN, "run", "--socket", d.socket()}}) {
    auto argv = prefix;
    argv.insert(argv.end(), {"--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"});
    auto r = run(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n") << join(prefix);
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// Like a shell: 127 for a command that does not exist, 126 for one that cannot be
// executed, each with an error saying so; on every path.
TEST_F(Signals, MissingCommandIs127AndNonExecutableIs126OnEveryPath) {
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  std::string plain = dir_ + "/not-executable";
  { std::ofstream(plain) << "echo should not run\n"; }
  chmod(plain.c_str(), 0644);
  for (const auto& prefix : std::vector<std::vector<std::string>>{
           {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/audit.db"},
           {AGENTCAGE_BIN, "trace", "--output", "/dev/null"},
           {AGENTCAGE_BIN, "run", "--socket", d.socket()},
           testing::as_nobody({AGENTCAGE_BIN, "run", "--socket", d.socket()})}) {
    std::string path = join(prefix);
    for (std::string missing : {"/nonexistent/cmd", "agentcage-no-such-command"}) {
      auto argv = prefix;
      argv.insert(argv.end(), {"--", missing});
      auto r = run(argv);
      EXPECT_EQ(r.status, 127) << path << " " << missing << "\n" << r.err;
      EXPECT_NE(r.err.find("command not found"), std::string::npos) << path << "\n" << r.err;
      EXPECT_NE(r.err.find(missing), std::string::npos) << path << "\n" << r.err;
    }
    for (std::string cannot : {plain, dir_}) {
      auto argv = prefix;
      argv.insert(argv.end(), {"--", cannot});
      auto r = run(argv);
      EXPECT_EQ(r.status, 126) << path << " " << cannot << "\n" << r.err;
      EXPECT_NE(r.err.find("execve(" + cannot + "): Permission denied"), std::string::npos) << path << "\n" << r.err;
      EXPECT_EQ(r.out, "");
    }
  }
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace agentcage
