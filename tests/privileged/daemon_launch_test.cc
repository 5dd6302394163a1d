// SPDX-License-Identifier: Apache-2.0
// Issue 9: agentcaged starts a profiled command itself (CreateSandboxRequest.launch), so
// the same profile yields the same enforcement whoever calls: root in-process, root
// through the daemon, user nobody through the daemon. The caller hands over its stdio
// and --pass-fd descriptors and supervises the run over the launch connection, which the
// sandbox's init holds: a daemon killed mid-run does not end it; the client's death does.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::processes_with;
using testing::read_all;
using testing::run;
using testing::wait_until;

std::string ns_of(const std::string& which) {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/self/ns/" + which, ec).string();
}

class Launch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs, creates cgroups and namespaces";
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
    testing::make_reachable(AGENTCAGE_BIN);
    ws_ = dir_ + "/ws";
    ASSERT_EQ(mkdir(ws_.c_str(), 0777), 0);
    chmod(ws_.c_str(), 0777);
    ASSERT_EQ(d_.start(), "");
  }
  void TearDown() override {
    if (!dir_.empty() && geteuid() == 0) {
      EXPECT_EQ(d_.stop(), 0) << d_.log();
    }
  }
  // `agentcage run` through the test daemon under the default profile, as root or nobody.
  std::vector<std::string> run_argv(bool nobody, const std::vector<std::string>& command,
                                    const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {AGENTCAGE_BIN, "run", "--socket", d_.socket(), "--profile", "default",
                                     "--workspace", ws_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return nobody ? testing::as_nobody(argv) : argv;
  }
  testing::ProcResult in_ws(const std::vector<std::string>& argv) {
    // The caller's working directory is the command's.
    char old[4096];
    EXPECT_NE(getcwd(old, sizeof old), nullptr);
    EXPECT_EQ(chdir(ws_.c_str()), 0);
    auto r = run(argv);
    EXPECT_EQ(chdir(old), 0);
    return r;
  }
  testing::DaemonProcess d_;
  std::string dir_, ws_;
};

// The same confinement for root and nobody: pid, mount, ipc and uts namespaces of its
// own, a private /tmp, no capabilities, the caller's uid, its working directory.
TEST_F(Launch, RootAndNobodyGetTheWholeConfinementOfTheProfile) {
  std::string marker = "/tmp/agentcage-launch-" + std::to_string(getpid());
  for (bool nobody : {false, true}) {
    std::string who = nobody ? "nobody" : "root";
    auto r = in_ws(run_argv(nobody, {"/bin/sh", "-c",
                                     "echo pid=$$; id -u; pwd; touch " + marker + " /var" + marker +
                                         "; for n in pid mnt ipc uts; do readlink /proc/self/ns/$n; done; "
                                         "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; exit 7"}));
    EXPECT_EQ(r.status, 7) << who << "\n" << r.err;
    auto l = testing::lines(r.out);
    ASSERT_EQ(l.size(), 9u) << who << "\n" << r.out << r.err;
    EXPECT_EQ(l[0], "pid=2") << who;
    EXPECT_EQ(l[1], nobody ? "65534" : "0") << who;
    EXPECT_EQ(l[2], ws_) << who;
    int i = 3;
    for (const char* n : {"pid", "mnt", "ipc", "uts"}) EXPECT_NE(l[i++], ns_of(n)) << who << ": " << n << " namespace";
    EXPECT_EQ(l[7], "CapEff:\t0000000000000000") << who;
    EXPECT_EQ(l[8], "NoNewPrivs:\t1") << who;
    EXPECT_FALSE(std::filesystem::exists(marker)) << who << ": the sandbox's /tmp is the host's";
    EXPECT_FALSE(std::filesystem::exists("/var" + marker)) << who << ": the sandbox's /var/tmp is the host's";
    std::filesystem::remove(marker);
    std::filesystem::remove("/var" + marker);
  }
}

// Without a private view (actions.filesystem: allow) the command still starts in the
// caller's working directory, not agentcaged's.
TEST_F(Launch, WithoutAViewTheCommandStartsInTheCallersDirectory) {
  std::string prof = dir_ + "/noview.yaml";
  { std::ofstream(prof) << "name: noview\nextends: default\nactions:\n  filesystem: allow\n"; }
  std::vector<std::string> argv = {AGENTCAGE_BIN, "run", "--socket", d_.socket(), "--profile", prof,
                                   "--workspace", ws_, "--", "/bin/pwd"};
  auto r = in_ws(argv);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, ws_ + "\n") << r.err;
}

// The profile's private view makes a deny_write tree inside the writable workspace
// read-only for nobody too (refused before: without the view Landlock alone would grant it).
TEST_F(Launch, DenyWriteInsideTheWorkspaceHoldsForNobody) {
  std::filesystem::create_directories(ws_ + "/.git/hooks");
  passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  for (const auto& d : {ws_ + "/.git", ws_ + "/.git/hooks"}) ASSERT_EQ(chown(d.c_str(), pw->pw_uid, pw->pw_gid), 0);
  auto r = in_ws(run_argv(true, {"/bin/sh", "-c", "echo evil > .git/hooks/pre-commit; echo rc=$?; echo ok > fine; echo rc=$?"}));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rc=2\nrc=0"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(std::filesystem::exists(ws_ + "/.git/hooks/pre-commit"));
  EXPECT_TRUE(std::filesystem::exists(ws_ + "/fine"));
}

// The view is built by root: what nobody cannot reach on the host stays out of it.
TEST_F(Launch, NobodyGainsNoAccessThroughTheView) {
  std::string priv = dir_ + "/private", ws = priv + "/ws";
  ASSERT_EQ(mkdir(priv.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(ws.c_str(), 0777), 0);
  chmod(ws.c_str(), 0777);
  { std::ofstream(ws + "/data") << "root's\n"; }
  chmod((ws + "/data").c_str(), 0644);
  auto argv = testing::as_nobody({AGENTCAGE_BIN, "run", "--socket", d_.socket(), "--profile", "default", "--workspace",
                                  ws, "--", "/bin/cat", ws + "/data"});
  auto r = run(argv);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("root's"), std::string::npos) << r.out;
  EXPECT_NE(d_.log().find("out of reach of uid 65534"), std::string::npos) << d_.log();
}

TEST_F(Launch, SigtermReachesTheAgentForRootAndNobody) {
  for (bool nobody : {false, true}) {
    std::string out = dir_ + (nobody ? "/nobody.out" : "/root.out");
    pid_t pid = testing::start(run_argv(nobody, {"/bin/sh", "-c", "trap 'exit 55' TERM; echo ready; while :; do sleep 0.1; done"}), out);
    ASSERT_TRUE(wait_until([&] { return read_all(out).find("ready") != std::string::npos; }, std::chrono::seconds(20)))
        << read_all(out);
    kill(pid, SIGTERM);
    EXPECT_EQ(testing::wait_status(pid), 55) << (nobody ? "nobody" : "root") << "\n" << read_all(out);
  }
}

TEST_F(Launch, SigkillOfTheClientEndsTheSandboxWithinASecond) {
  std::string token = dir_ + "/token", out = dir_ + "/run.out";
  pid_t pid = testing::start(
      run_argv(true, {"/bin/sh", "-c", "sh -c 'while :; do sleep 0.1; done # " + token + "' & echo ready; while :; do sleep 0.1; done # " + token}),
      out);
  ASSERT_TRUE(wait_until([&] { return processes_with(token).size() >= 2; }, std::chrono::seconds(20))) << read_all(out);
  auto ps = run({AGENTCAGE_BIN, "ps", "--socket", d_.socket(), "--format", "json"});
  ASSERT_NE(ps.out.find("\"id\""), std::string::npos) << ps.out << ps.err;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  EXPECT_EQ(testing::wait_status(pid), 128 + SIGKILL);
  EXPECT_TRUE(wait_until([&] { return processes_with(token).empty(); }, std::chrono::seconds(1)))
      << processes_with(token).size() << " processes of the sandbox outlived its client";
  EXPECT_TRUE(wait_until(
      [&] {
        auto p = run({AGENTCAGE_BIN, "ps", "--socket", d_.socket(), "--format", "json"});
        return p.out.find("\"id\"") == std::string::npos;
      },
      std::chrono::seconds(1)))
      << "the daemon still lists the sandbox";
  for (pid_t p : processes_with(token)) kill(p, SIGKILL);
}

// The client talks to the sandbox's init, not to the daemon: a daemon killed mid-run
// leaves the run going, with its output and its exit status.
TEST_F(Launch, ARunOutlivesAKilledDaemonWithItsExitStatus) {
  std::string out = dir_ + "/run.out";
  pid_t pid = testing::start(run_argv(true, {"/bin/sh", "-c", "echo ready; sleep 1; echo done; exit 9"}), out);
  ASSERT_TRUE(wait_until([&] { return read_all(out).find("ready") != std::string::npos; }, std::chrono::seconds(20)));
  // The sandbox's init is the daemon's child but its own process: named so in ps.
  bool init_seen = false;
  for (pid_t p : processes_with(d_.socket()))
    init_seen |= read_all("/proc/" + std::to_string(p) + "/comm") == "agentcage-init\n";
  EXPECT_TRUE(init_seen);
  ASSERT_EQ(kill(d_.pid(), SIGKILL), 0);
  EXPECT_EQ(testing::wait_status(pid), 9) << read_all(out);
  EXPECT_NE(read_all(out).find("done"), std::string::npos) << read_all(out);
  // A successor on the same state cleans up (and the fixture's stop() has one to stop).
  d_.stop();
  testing::remove_daemon_pins(d_.dir());
  ASSERT_EQ(d_.start(), "");
}

// Only 0-2 and --pass-fd descriptors reach the command, under their own numbers.
TEST_F(Launch, OnlyPassedDescriptorsReachTheCommand) {
  std::string secret = dir_ + "/secret";
  { std::ofstream(secret) << "fd secret\n"; }
  chmod(secret.c_str(), 0644);
  for (bool pass : {false, true}) {
    std::vector<std::string> extra;
    if (pass) extra = {"--pass-fd", "7"};
    auto argv = run_argv(true, {"/bin/sh", "-c", "echo $(ls /proc/self/fd); cat <&7"}, extra);
    // The caller has the file on fd 7 (and the test's own descriptors).
    std::string line;
    for (const auto& a : argv) line += "'" + a + "' ";
    auto r = run({"/bin/sh", "-c", "exec 7<" + secret + "; cd " + ws_ + "; exec " + line});
    if (pass) {
      EXPECT_NE(r.out.find("fd secret"), std::string::npos) << r.out << r.err;
    } else {
      EXPECT_EQ(r.out.find("fd secret"), std::string::npos) << r.out;
      EXPECT_EQ(r.out.rfind("0 1 2 3\n", 0), 0u) << r.out;  // ls's own directory is 3
    }
  }
}

// --pass-fd numbers may be anything, the daemon's own descriptors in the child (the error
// pipe, the Landlock ruleset, ...) included: they land after the setup, the confinement
// holds, and an exec failure is still reported.
TEST_F(Launch, PassedDescriptorsOnAnyNumberLeaveTheConfinementWhole) {
  std::string file = dir_ + "/passed";
  { std::ofstream(file) << "passed\n"; }
  chmod(file.c_str(), 0644);
  std::string opens, reads;
  std::vector<std::string> extra;
  for (int fd = 3; fd <= 20; ++fd) {
    opens += "exec " + std::to_string(fd) + "<" + file + "; ";
    reads += "read l <&" + std::to_string(fd) + " && echo $l; ";
    extra.insert(extra.end(), {"--pass-fd", std::to_string(fd)});
  }
  auto quoted = [](const std::vector<std::string>& argv) {
    std::string line;
    for (const auto& a : argv) line += "'" + a + "' ";
    return line;
  };
  // bash: dash takes single-digit descriptors only.
  auto argv = run_argv(true, {"/bin/bash", "-c", reads + "grep -E \"^(CapEff|NoNewPrivs|Seccomp):\" /proc/self/status"}, extra);
  auto r = run({"/bin/bash", "-c", opens + "cd " + ws_ + "; exec " + quoted(argv)});
  EXPECT_EQ(r.status, 0) << r.err;
  size_t n = 0;
  for (const auto& l : testing::lines(r.out)) n += l == "passed";
  EXPECT_EQ(n, 18u) << r.out;
  EXPECT_NE(r.out.find("CapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2"), std::string::npos) << r.out;
  argv = run_argv(true, {"/usr/bin/agentcage-no-such-command"}, extra);
  r = run({"/bin/bash", "-c", opens + "cd " + ws_ + "; exec " + quoted(argv)});
  EXPECT_EQ(r.status, 127) << r.err;
  EXPECT_NE(r.err.find("agentcage-no-such-command"), std::string::npos) << r.err;
}

TEST_F(Launch, MissingCommandIs127AndTheErrorSaysSo) {
  auto r = in_ws(run_argv(true, {"/usr/bin/agentcage-no-such-command"}));
  EXPECT_EQ(r.status, 127) << r.err;
  EXPECT_NE(r.err.find("agentcage-no-such-command"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace agentcage
