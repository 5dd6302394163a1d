// SPDX-License-Identifier: Apache-2.0
// Issue 9: enforcement outlives agentcaged. A daemon killed with SIGKILL leaves its pinned
// BPF programs enforcing every sandbox; the next one re-adopts each sandbox from the pins
// and its state records, says in the stream that there was a gap, and kills (fails
// closed) any sandbox it cannot re-adopt. The caller is a real unprivileged user whose
// agent loops on a connect the default profile denies, to a listener of the test's own.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::read_all;
using testing::run;
using testing::wait_until;

uint64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class Restart : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcaged loads BPF programs";
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
    testing::make_reachable(AGENTCAGE_BIN);
    ws_ = dir_ + "/ws";
    ASSERT_EQ(mkdir(ws_.c_str(), 0755), 0);
    passwd* pw = getpwnam("nobody");
    ASSERT_NE(pw, nullptr);
    ASSERT_EQ(chown(ws_.c_str(), pw->pw_uid, pw->pw_gid), 0);
    sock_ = dir_ + "/agentcage.sock";
    // Its own state and pins: the defaults may belong to a daemon of the host.
    state_ = dir_ + "/state";
    pin_ = testing::daemon_pin_dir(dir_);
    // The agent's target: a loopback listener the default profile (no network) denies.
    lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(lfd_, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(lfd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_EQ(listen(lfd_, 64), 0);
    socklen_t sl = sizeof sa;
    ASSERT_EQ(getsockname(lfd_, reinterpret_cast<sockaddr*>(&sa), &sl), 0);
    port_ = ntohs(sa.sin_port);
    start_daemon();
  }

  void TearDown() override {
    if (agent_ > 0 && testing::pid_alive(agent_)) kill(agent_, SIGKILL);
    if (agent_ > 0) testing::wait_status(agent_);
    // A daemon on the same state cleans up whatever a failed test left: it kills the
    // sandboxes whose launcher is gone, and a clean stop removes its pins.
    bool records = false;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(state_, ec)) records |= e.path().extension() == ".pb";
    if (daemon_ <= 0 && records) start_daemon();
    stop_daemon();
    if (!dir_.empty()) testing::remove_daemon_pins(dir_);
    if (lfd_ >= 0) close(lfd_);
  }

  void start_daemon() {
    unlink(sock_.c_str());  // a SIGKILLed daemon leaves its socket file
    std::string log = dir_ + "/daemon" + std::to_string(++starts_) + ".log";
    std::vector<std::string> argv{AGENTCAGED_BIN, "--socket", sock_, "--audit-db", dir_ + "/audit.db"};
    for (auto& a : testing::daemon_state_args(dir_)) argv.push_back(a);
    daemon_ = testing::start(argv, log);
    ASSERT_TRUE(wait_until([&] { return access(sock_.c_str(), F_OK) == 0; }, std::chrono::seconds(10)))
        << read_all(log);
  }
  void stop_daemon() {
    if (daemon_ <= 0) return;
    kill(daemon_, SIGTERM);
    EXPECT_EQ(testing::wait_status(daemon_), 0) << logs();
    daemon_ = -1;
  }
  void crash_daemon() {
    kill(daemon_, SIGKILL);
    EXPECT_EQ(testing::wait_status(daemon_), 128 + SIGKILL);
    daemon_ = -1;
  }
  std::string logs() {
    std::string all;
    for (int i = 1; i <= starts_; ++i) all += read_all(dir_ + "/daemon" + std::to_string(i) + ".log");
    return all;
  }

  // As nobody, through the daemon: one connect attempt every 50 ms, one line each.
  void start_agent(const std::vector<std::string>& policy = {"--profile", "default", "--workspace"}) {
    std::string loop = "while :; do if bash -c 'echo x >/dev/tcp/127.0.0.1/" + std::to_string(port_) +
                       "' 2>/dev/null; then echo CONNECTED; else echo denied; fi; sleep 0.05; done";
    std::vector<std::string> argv{"env",           "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", "setpriv",
                                  "--reuid=nobody", "--regid=nogroup", "--clear-groups", AGENTCAGE_BIN, "run",
                                  "--socket",       sock_};
    argv.insert(argv.end(), policy.begin(), policy.end());
    if (policy.back() == "--workspace") argv.push_back(ws_);
    for (const char* a : {"--", "sh", "-c"}) argv.push_back(a);
    argv.push_back(loop);
    agent_ = testing::start(argv, dir_ + "/agent.out");
    ASSERT_TRUE(wait_until([&] { return count("denied") >= 3; }, std::chrono::seconds(20)))
        << read_all(dir_ + "/agent.out") << logs();
    auto ps = run({AGENTCAGE_BIN, "ps", "--socket", sock_, "-o", "json"}).out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(ps, m, std::regex("\"id\":\"([0-9a-f]{16})\""))) << ps;
    id_ = m[1];
    ASSERT_TRUE(std::regex_search(ps, m, std::regex("\"cgroup_path\":\"([^\"]+)\""))) << ps;
    cgroup_ = m[1];
  }
  // Profile `name` (YAML `body`) in dir_/prof, on the search path of agentcaged, which is
  // restarted to read it (the variable stays set for later starts; the test unsets it).
  std::string serve_profile(const std::string& name, const std::string& body) {
    std::string pdir = dir_ + "/prof";
    EXPECT_EQ(mkdir(pdir.c_str(), 0755), 0);
    { std::ofstream(pdir + "/" + name + ".yaml") << body; }
    chmod((pdir + "/" + name + ".yaml").c_str(), 0644);
    stop_daemon();
    setenv("AGENTCAGE_PROFILE_PATH", pdir.c_str(), 1);  // read by agentcaged at start
    start_daemon();
    return pdir;
  }
  // As nobody, through the daemon: `sh -c script` under `profile` (found in `pdir` too,
  // when given), which prints "ready" first. Waits for it; sets id_ and cgroup_.
  void start_ready_agent(const std::string& profile, const std::string& script, const std::string& pdir = "") {
    std::vector<std::string> argv{"env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent"};
    if (!pdir.empty()) argv.push_back("AGENTCAGE_PROFILE_PATH=" + pdir);
    for (const std::string& a : {std::string("setpriv"), std::string("--reuid=nobody"), std::string("--regid=nogroup"),
                                 std::string("--clear-groups"), std::string(AGENTCAGE_BIN), std::string("run"),
                                 std::string("--socket"), sock_, std::string("--profile"), profile,
                                 std::string("--workspace"), ws_, std::string("--"), std::string("sh"),
                                 std::string("-c"), script})
      argv.push_back(a);
    agent_ = testing::start(argv, dir_ + "/agent.out");
    ASSERT_TRUE(wait_until([&] { return count("ready") == 1; }, std::chrono::seconds(20)))
        << read_all(dir_ + "/agent.out") << logs();
    auto ps = run({AGENTCAGE_BIN, "ps", "--socket", sock_, "-o", "json"}).out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(ps, m, std::regex("\"id\":\"([0-9a-f]{16})\""))) << ps;
    id_ = m[1];
    ASSERT_TRUE(std::regex_search(ps, m, std::regex("\"cgroup_path\":\"([^\"]+)\""))) << ps;
    cgroup_ = m[1];
  }
  int count(const std::string& line) {
    int n = 0;
    for (const auto& l : testing::lines(read_all(dir_ + "/agent.out"))) n += l == line;
    return n;
  }
  // Connections that reached the listener: none may, ever.
  int accepted() {
    int n = 0;
    for (int fd; (fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC)) >= 0; ++n) close(fd);
    return n;
  }
  // With no daemon running: attempts go on and every one is denied.
  void expect_denied_for_a_while() {
    int before = count("denied");
    EXPECT_TRUE(wait_until([&] { return count("denied") >= before + 10; }, std::chrono::seconds(10)))
        << read_all(dir_ + "/agent.out");
    EXPECT_EQ(count("CONNECTED"), 0) << read_all(dir_ + "/agent.out");
    EXPECT_EQ(accepted(), 0);
  }
  std::string events(const std::string& extra = "") {
    std::vector<std::string> argv{AGENTCAGE_BIN, "events", "--socket", sock_, "--sandbox", id_};
    if (!extra.empty()) argv.push_back(extra);
    return run(argv).out;
  }

  std::string dir_, ws_, sock_, state_, pin_, id_, cgroup_;
  int lfd_ = -1, port_ = 0, starts_ = 0;
  pid_t daemon_ = -1, agent_ = -1;
};

// The policy is the profile's or the command line's: re-adopted either way.
class RestartWith : public Restart, public ::testing::WithParamInterface<std::vector<std::string>> {};

TEST_P(RestartWith, KilledDaemonLeavesTheSandboxEnforcedAndARestartReadoptsIt) {
  start_agent(GetParam());
  crash_daemon();
  expect_denied_for_a_while();

  uint64_t restarted = wall_ns();
  start_daemon();
  auto ps = run({AGENTCAGE_BIN, "ps", "--socket", sock_}).out;
  EXPECT_NE(ps.find(id_ + "  running"), std::string::npos) << ps << logs();
  // In the stream: the gap notice, then denials that happened after the restart.
  auto later_denial = [&] {
    bool notice = false;
    for (const auto& l : testing::lines(events())) {
      notice |= l.find("\"reason\":\"daemon_restart\"") != std::string::npos;
      std::smatch m;
      if (notice && l.find("\"mechanism\":\"cgroup-bpf\"") != std::string::npos &&
          std::regex_search(l, m, std::regex("\"time_ns\":\"([0-9]+)\"")) && std::stoull(m[1]) > restarted)
        return true;
    }
    return false;
  };
  EXPECT_TRUE(wait_until(later_denial, std::chrono::seconds(10))) << events() << logs();
  EXPECT_EQ(count("CONNECTED"), 0);
  EXPECT_EQ(accepted(), 0);

  // The re-adopted sandbox is supervised as before: its launcher's death closes it.
  kill(agent_, SIGKILL);
  EXPECT_EQ(testing::wait_status(agent_), 128 + SIGKILL);
  agent_ = -1;
  EXPECT_TRUE(wait_until([&] { return access(cgroup_.c_str(), F_OK) != 0; }, std::chrono::seconds(2)))
      << cgroup_ << " still exists\n" << logs();
  // A clean stop leaves nothing pinned.
  stop_daemon();
  EXPECT_FALSE(std::filesystem::exists(pin_)) << pin_;
  EXPECT_FALSE(std::filesystem::exists(state_ + "/" + id_ + ".pb"));
}

INSTANTIATE_TEST_SUITE_P(Policy, RestartWith,
                         ::testing::Values(std::vector<std::string>{"--profile", "default", "--workspace"},
                                           std::vector<std::string>{"--allow-net", "127.0.0.1:1/tcp"}),
                         [](const auto& p) { return p.param[0] == "--profile" ? "Profile" : "AllowNet"; });

TEST_F(Restart, WithNoDaemonTheSandboxStaysEnforcedAndAnOrphanIsKilledAtStart) {
  start_agent();
  crash_daemon();
  expect_denied_for_a_while();
  // The launcher (the client) dies while no daemon watches: the sandbox's init holds its
  // connection and ends the sandbox within a second, daemon or not; the next daemon must
  // not re-adopt a sandbox nobody supervises, and removes what is left of it.
  kill(agent_, SIGKILL);
  testing::wait_status(agent_);
  agent_ = -1;
  EXPECT_TRUE(wait_until([&] { return read_all(cgroup_ + "/cgroup.procs").empty(); }, std::chrono::seconds(1)))
      << read_all(cgroup_ + "/cgroup.procs");
  start_daemon();
  EXPECT_TRUE(wait_until([&] { return access(cgroup_.c_str(), F_OK) != 0; }, std::chrono::seconds(2)))
      << cgroup_ << " still exists\n" << logs();
  auto ev = events("--violations");
  EXPECT_NE(ev.find("\"mechanism\":\"agentcaged\""), std::string::npos) << ev << logs();
  EXPECT_NE(ev.find("launcher"), std::string::npos) << ev;
  EXPECT_EQ(accepted(), 0);
}

// Issue 11 item 3, after a restart: the memory limit is the kernel's (it holds while no
// daemon runs), and the daemon that re-adopts the sandbox reports its OOM kill as the limit's
// violation, as the one that launched it would have. Its v1 limit directories go when the
// sandbox closes, though no prepared confinement of this daemon owns them.
TEST_F(Restart, AMemoryLimitHoldsAndIsReportedAcrossARestart) {
  std::string pdir = serve_profile("limits", "name: limits\nextends: default\nprocess:\n  memory_max: 64M\n");
  const std::string go = ws_ + "/go";
  std::string script = "echo ready; while [ ! -e " + go +
                       " ]; do sleep 0.05; done; /usr/bin/python3 -c 'b = []\nfor i in range(16): "
                       "b.append(b\"\\1\" * (16 << 20))\nprint(\"allocated\")'; echo bomb=$?";
  start_ready_agent("limits", script, pdir);
  if (HasFatalFailure()) return;
  const std::string v1dir = "/sys/fs/cgroup/memory/agentcage/" + id_;
  bool v1 = access(v1dir.c_str(), F_OK) == 0;  // Debian's hybrid layout: memory is v1 only
  crash_daemon();
  start_daemon();
  unsetenv("AGENTCAGE_PROFILE_PATH");
  { std::ofstream(go) << "1\n"; }
  EXPECT_EQ(testing::wait_status(agent_), 0) << read_all(dir_ + "/agent.out") << logs();
  agent_ = -1;
  std::string out = read_all(dir_ + "/agent.out");
  EXPECT_EQ(out.find("allocated"), std::string::npos) << out;
  EXPECT_NE(out.find("bomb=137"), std::string::npos) << out << logs();
  auto oom = [&] {
    int n = 0;
    for (const auto& l : testing::lines(events("--violations")))
      n += l.find("\"mechanism\":\"memory-limit\"") != std::string::npos &&
           l.find("process.memory_max: 67108864 (cgroup v") != std::string::npos;
    return n;
  };
  EXPECT_TRUE(wait_until([&] { return oom() == 1; }, std::chrono::seconds(10))) << events() << logs();
  if (v1) {
    EXPECT_TRUE(wait_until([&] { return access(v1dir.c_str(), F_OK) != 0; }, std::chrono::seconds(5))) << v1dir;
  }
}

// Issue 12 item 2: actions.exec: kill is the kernel's own. With agentcaged SIGKILLed, a
// sandbox under mcp-server that execs a file it wrote is killed on the refused exec's way
// out (the pinned programs run on): the image and the caller's next command never run.
// The next daemon reports the kill from the pinned ring.
TEST_F(Restart, AnExecKillHoldsWhileTheDaemonIsDownAndIsReportedAfter) {
  const std::string go = ws_ + "/go";
  const std::string script = "printf '#!/bin/sh\\necho PWNED\\n' > /tmp/evil.sh && chmod 755 /tmp/evil.sh && "
                             "echo ready; while [ ! -e " + go + " ]; do sleep 0.05; done; echo going; "
                             "/tmp/evil.sh; echo survived";
  start_ready_agent("mcp-server", script);
  if (HasFatalFailure()) return;
  const std::string procs = cgroup_ + "/cgroup.procs";
  crash_daemon();
  { std::ofstream(go) << "1\n"; }
  ASSERT_TRUE(wait_until([&] { return count("going") == 1; }, std::chrono::seconds(10))) << read_all(dir_ + "/agent.out");
  // Dead with no daemon running: the sandbox's cgroup empties.
  EXPECT_TRUE(wait_until([&] { return read_all(procs).empty(); }, std::chrono::seconds(10))) << read_all(procs);
  std::string out = read_all(dir_ + "/agent.out");
  EXPECT_EQ(out.find("PWNED"), std::string::npos) << out;
  EXPECT_EQ(out.find("survived"), std::string::npos) << out;
  start_daemon();
  EXPECT_EQ(testing::wait_status(agent_), 128 + SIGKILL) << read_all(dir_ + "/agent.out") << logs();
  agent_ = -1;
  auto killed = [&] {
    int n = 0;
    for (const auto& l : testing::lines(events("--violations")))
      n += l.find("\"action\":\"kill\"") != std::string::npos && l.find("exec /tmp/evil.sh") != std::string::npos &&
           l.find("\"mechanism\":\"landlock\"") != std::string::npos;
    return n;
  };
  EXPECT_TRUE(wait_until([&] { return killed() == 1; }, std::chrono::seconds(10))) << events() << logs();
}

// Issue 12 item 3: an audit-mode sandbox re-adopted after a crash still has the syscalls
// its profile would refuse recorded and reported (the per-sandbox set and the switch that
// turns the check on are rewritten from the re-adopted policy).
TEST_F(Restart, AuditModeKeepsReportingWhatItWouldDenyAfterARestart) {
  std::string pdir = serve_profile("learn", "name: learn\nextends: default\nmode: audit\n");
  const std::string go = ws_ + "/go";
  std::string script = "echo ready; while [ ! -e " + go + " ]; do sleep 0.05; done; /usr/bin/python3 -c "
                       "'import ctypes; print(\"ptrace\", ctypes.CDLL(None).ptrace(0, 0, 0, 0))'";
  start_ready_agent("learn", script, pdir);
  if (HasFatalFailure()) return;
  crash_daemon();
  start_daemon();
  unsetenv("AGENTCAGE_PROFILE_PATH");
  { std::ofstream(go) << "1\n"; }
  EXPECT_EQ(testing::wait_status(agent_), 0) << read_all(dir_ + "/agent.out") << logs();
  agent_ = -1;
  EXPECT_NE(read_all(dir_ + "/agent.out").find("ptrace 0"), std::string::npos) << read_all(dir_ + "/agent.out");
  auto audited = [&] {
    int n = 0;
    for (const auto& l : testing::lines(events("--violations")))
      n += l.find("\"action\":\"audit\"") != std::string::npos &&
           l.find("audit: would deny syscall ptrace") != std::string::npos;
    return n;
  };
  EXPECT_TRUE(wait_until([&] { return audited() == 1; }, std::chrono::seconds(10))) << events() << logs();
}

TEST_F(Restart, AStartThatFailsEarlyKeepsTheCrashedDaemonsPins) {
  start_agent();
  crash_daemon();
  // This one fails at its audit store, before it has re-adopted anything: it must not
  // take the pins (and so the enforcement) of the sandboxes it did not get to.
  std::vector<std::string> argv{AGENTCAGED_BIN, "--socket", sock_, "--audit-db", "/proc/agentcage-no/audit.db"};
  for (auto& a : testing::daemon_state_args(dir_)) argv.push_back(a);
  unlink(sock_.c_str());
  auto failed = run(argv, std::chrono::seconds(30));
  EXPECT_EQ(failed.status, 1) << failed.err;
  EXPECT_NE(failed.err.find("keeping the BPF pins"), std::string::npos) << failed.err;
  EXPECT_TRUE(std::filesystem::exists(pin_)) << failed.err;
  expect_denied_for_a_while();
  start_daemon();  // and a good one re-adopts
  auto ps = run({AGENTCAGE_BIN, "ps", "--socket", sock_}).out;
  EXPECT_NE(ps.find(id_ + "  running"), std::string::npos) << ps << logs();
}

TEST_F(Restart, SandboxWhosePinsWereLostIsKilledNotLeftUnenforced) {
  start_agent();
  crash_daemon();
  // What an upgrade to another BPF build, or someone clearing bpffs, does: the programs
  // detach and the sandbox runs unenforced until a daemon starts.
  std::filesystem::remove_all(pin_);
  EXPECT_TRUE(wait_until([&] { return count("CONNECTED") > 0; }, std::chrono::seconds(10)))
      << "premise: without the pins nothing enforces\n" << read_all(dir_ + "/agent.out");
  start_daemon();
  // Killed with the sandbox: the agent dies of SIGKILL, and `run` reports it.
  EXPECT_EQ(testing::wait_status(agent_), 128 + SIGKILL) << read_all(dir_ + "/agent.out");
  agent_ = -1;
  EXPECT_NE(access(cgroup_.c_str(), F_OK), 0) << cgroup_;
  auto ev = events("--violations");
  EXPECT_NE(ev.find("\"mechanism\":\"agentcaged\""), std::string::npos) << ev << logs();
  EXPECT_NE(ev.find("not enforced while no daemon ran"), std::string::npos) << ev;
}

}  // namespace
}  // namespace agentcage

namespace agentcage {
namespace {

// Issue 10: a sandbox's record is in the store, so after a restart its owner still reads
// `ps --all`, `events --sandbox` and `tree` for a sandbox that closed before it; another
// unprivileged user still cannot.
TEST_F(Restart, ClosedSandboxStaysItsOwnersAfterARestart) {
  start_agent();
  ASSERT_FALSE(id_.empty());
  kill(agent_, SIGKILL);  // the client dies: the daemon closes the sandbox
  testing::wait_status(agent_);
  agent_ = -1;
  ASSERT_TRUE(wait_until([&] { return run({AGENTCAGE_BIN, "ps", "--socket", sock_, "-o", "json"}).out.find(id_) ==
                                      std::string::npos; },
                         std::chrono::seconds(10)))
      << logs();
  stop_daemon();
  start_daemon();

  auto nobody = [&](std::vector<std::string> argv) { return run(testing::as_nobody(argv)); };
  auto ps = nobody({AGENTCAGE_BIN, "ps", "--socket", sock_, "--all", "-o", "json"});
  EXPECT_EQ(ps.status, 0) << ps.err;
  EXPECT_NE(ps.out.find(id_), std::string::npos) << ps.out << logs();
  auto evs = nobody({AGENTCAGE_BIN, "events", "--socket", sock_, "--sandbox", id_, "--kind", "sandbox", "-o", "text"});
  EXPECT_EQ(evs.status, 0) << evs.err;
  EXPECT_NE(evs.out.find("sandbox created uid "), std::string::npos) << evs.out;
  EXPECT_NE(evs.out.find("sandbox closed uid "), std::string::npos) << evs.out;
  auto execs = nobody({AGENTCAGE_BIN, "events", "--socket", sock_, "--sandbox", id_, "--kind", "exec"});
  EXPECT_EQ(execs.status, 0) << execs.err;
  EXPECT_NE(execs.out.find("\"exec\""), std::string::npos) << execs.out;
  auto tree = nobody({AGENTCAGE_BIN, "tree", "--socket", sock_, id_});
  EXPECT_EQ(tree.status, 0) << tree.err;
  EXPECT_NE(tree.out.find("sh -c"), std::string::npos) << tree.out;
  // The record names the profile, its digest and the mechanisms in force.
  auto json = run({AGENTCAGE_BIN, "events", "--socket", sock_, "--sandbox", id_, "--kind", "sandbox"}).out;
  EXPECT_NE(json.find("\"profile\":\"default\""), std::string::npos) << json;
  EXPECT_TRUE(std::regex_search(json, std::regex("\"profile_digest\":\"[0-9a-f]{64}\""))) << json;
  EXPECT_NE(json.find("\"landlock: abi "), std::string::npos) << json;
  EXPECT_NE(json.find("\"seccomp: "), std::string::npos) << json;

  // The incident report names them too, from the store's record (the daemon no longer
  // has the sandbox in memory), through the daemon for its owner and offline for root.
  for (auto& rep : {nobody({AGENTCAGE_BIN, "audit", "report", "--socket", sock_, "--sandbox", id_}),
                    run({AGENTCAGE_BIN, "audit", "report", "--db", dir_ + "/audit.db", "--sandbox", id_})}) {
    EXPECT_EQ(rep.status, 0) << rep.err;
    EXPECT_TRUE(std::regex_search(rep.out, std::regex("profile: +default\n"))) << rep.out;
    EXPECT_TRUE(std::regex_search(rep.out, std::regex("in force: +landlock: abi "))) << rep.out;
    EXPECT_TRUE(std::regex_search(rep.out, std::regex("sandbox: +closed at "))) << rep.out;
    EXPECT_TRUE(std::regex_search(rep.out, std::regex("owner: +uid 65534"))) << rep.out;
  }

  // Another unprivileged user: refused, as before the restart.
  auto other = run({"setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", AGENTCAGE_BIN, "events",
                    "--socket", sock_, "--sandbox", id_});
  EXPECT_NE(other.status, 0);
  EXPECT_NE(other.err.find("PERMISSION_DENIED"), std::string::npos) << other.err;
  auto other_ps = run({"setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", AGENTCAGE_BIN, "ps",
                       "--socket", sock_, "--all", "-o", "json"});
  EXPECT_EQ(other_ps.out.find(id_), std::string::npos) << other_ps.out;
}

}  // namespace
}  // namespace agentcage
