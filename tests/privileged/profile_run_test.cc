// SPDX-License-Identifier: Apache-2.0
// `agentcage run --profile` end to end: the shipped profiles enforced on real processes
// (root-started, as an agent runtime often is), every denial reported as a violation
// naming its mechanism, the agent's exit status kept.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "support/loopback_listener.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs, creates cgroups and namespaces"

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

using Listener = testing::LoopbackListener;

std::string connect_cmd(const std::string& host, int port) {
  return "python3 -c 'import socket,sys\ntry:\n  socket.create_connection((\"" + host + "\"," + std::to_string(port) +
         "),timeout=3); print(\"connected\")\nexcept OSError as e: print(\"refused\", e.errno)'";
}

class ProfileRun : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_ROOT();
    ws_ = testing::temp_dir();
    std::ofstream(ws_ + "/notes.txt") << "project notes\n";
  }
  testing::ProcResult agent(const std::string& profile, const std::string& script) {
    return run({AGENTCAGE_BIN, "run", "--no-daemon", "--profile", profile, "--workspace", ws_, "--", "sh", "-c",
                "cd " + ws_ + " && " + script});
  }
  std::string ws_;
};

TEST_F(ProfileRun, DefaultAllowsTheWorkspaceAndDeniesSecretsSystemWritesAndNetwork) {
  Listener l;
  auto r = agent("default", "cat notes.txt && echo result > out.txt && cat /etc/shadow; touch /usr/x; " +
                                connect_cmd("127.0.0.1", l.port) + "; exit 3");
  EXPECT_EQ(r.status, 3) << r.err;  // the agent's own status
  EXPECT_NE(r.out.find("project notes"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(read_all(ws_ + "/out.txt"), "result\n");
  EXPECT_EQ(access("/usr/x", F_OK), -1);
  EXPECT_NE(r.out.find("refused 1"), std::string::npos) << r.out;  // EPERM
  // Each denial is a violation naming its mechanism, and the summary counts them.
  EXPECT_NE(r.err.find("open /etc/shadow (mount-mask, filesystem.deny: /etc/shadow)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/usr/x (mount-mask"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("connect 127.0.0.1:" + std::to_string(l.port) + "/tcp (cgroup-bpf"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("violations: cgroup-bpf 1, mount-mask 2"), std::string::npos) << r.err;
}

// An agent that switches the terminal to the alternate screen and hidden text cannot
// conceal what agentcage reports: on a terminal each relayed violation line resets the
// attributes, and the summary leaves the alternate screen first. Not on a pipe.
TEST_F(ProfileRun, ViolationReportsResetTerminalStateTheAgentChanged) {
  const std::string script = "printf '\\033[?1049h\\033[8m\\033[?25l'; cat /etc/shadow; true";
  std::string cmd = std::string(AGENTCAGE_BIN) + " run --no-daemon --no-store --profile default --workspace " + ws_ +
                    " -- sh -c \"" + script + "\"";
  // script(1) gives the run a pseudo-terminal and copies what it writes to stdout.
  auto r = run({"script", "-qefc", cmd, "/dev/null"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  auto agent_alt = r.out.find("\033[?1049h");
  auto relayed = r.out.find("\033[0magentcage: violation: ");
  auto summary = r.out.find("\033[?1049l\033[0m\033[?25h\ragentcage: ");
  ASSERT_NE(agent_alt, std::string::npos) << r.out;
  ASSERT_NE(relayed, std::string::npos) << "relayed line without an attribute reset:\n" << r.out;
  ASSERT_NE(summary, std::string::npos) << "summary without a terminal reset:\n" << r.out;
  EXPECT_LT(agent_alt, relayed);
  EXPECT_LT(relayed, summary);
  EXPECT_NE(r.out.find(" violation", summary), std::string::npos) << r.out;
  // On a pipe nothing is added: stderr stays plain text for logs and tools.
  auto plain = agent("default", "cat /etc/shadow; true");
  EXPECT_NE(plain.err.find("agentcage: violation: "), std::string::npos) << plain.err;
  EXPECT_EQ(plain.err.find('\033'), std::string::npos) << plain.err;
}

TEST_F(ProfileRun, DefaultDeniesDangerousSyscallsWithSeccomp) {
  auto r = agent("default", "unshare -U true; echo rc=$?");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("rc=1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("(seccomp"), std::string::npos) << r.err;
}

// coding-agent reaches public HTTPS but not the host's own services, and a connect to
// the cloud metadata address kills the process on the spot (before any packet leaves).
TEST_F(ProfileRun, CodingAgentDeniesLoopbackAndKillsOnMetadataAccess) {
  Listener l;
  auto r = agent("coding-agent", connect_cmd("127.0.0.1", l.port));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("refused 1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("deny connect 127.0.0.1:" + std::to_string(l.port)), std::string::npos) << r.err;

  auto k = agent("coding-agent", "exec " + connect_cmd("169.254.169.254", 443));
  EXPECT_EQ(k.status, 128 + 9) << k.out << k.err;
  EXPECT_NE(k.err.find("kill connect 169.254.169.254:443/tcp (cgroup-bpf"), std::string::npos) << k.err;
}

TEST_F(ProfileRun, AuditModeAllowsAndRecordsWhatWouldBeDenied) {
  Listener l;
  std::string prof = ws_ + "/../audit-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(prof) << "name: learn\ndescription: audit-mode default\nextends: default\nmode: audit\n";
  auto r = agent(prof, connect_cmd("127.0.0.1", l.port));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("connected"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("audit connect 127.0.0.1:" + std::to_string(l.port)), std::string::npos) << r.err;
  unlink(prof.c_str());
}

TEST_F(ProfileRun, BadProfileIsAnErrorWithFileLineColumnAndNothingRuns) {
  std::string prof = ws_ + "/../bad-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(prof) << "name: bad\nfilesystem:\n  reed: [/usr]\n";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--profile", prof, "--", "sh", "-c", "touch " + ws_ + "/ran"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(prof + ":3:3: unknown key 'reed'"), std::string::npos) << r.err;
  EXPECT_NE(access((ws_ + "/ran").c_str(), F_OK), 0) << "the command ran despite a bad profile";
  unlink(prof.c_str());
}

}  // namespace
}  // namespace agentcage

namespace agentcage {
namespace {

// Embedded mode (no daemon) records into the same hash-chained store the daemon keeps:
// the run and its violations are on record and the chain verifies.
TEST_F(ProfileRun, EmbeddedRunIsRecordedInTheAuditStore) {
  std::string db = ws_ + "/../audit-" + std::to_string(getpid()) + ".db";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", db, "--profile", "default", "--workspace", ws_, "--",
                "sh", "-c", "cat /etc/shadow; echo recorded-run"});
  EXPECT_EQ(r.status, 0) << r.err;
  auto v = run({AGENTCAGE_BIN, "audit", "verify", "--db", db});
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  EXPECT_EQ(v.out.rfind("OK: ", 0), 0u) << v.out;
  auto n = run({"sqlite3", db, "select count(*) from events where is_violation = 1"});
  EXPECT_EQ(n.status, 0) << n.err;
  EXPECT_GE(std::stoi(n.out.empty() ? "0" : n.out), 1) << "the shadow read's violation is not in the store";
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((db + suffix).c_str());
}

}  // namespace
}  // namespace agentcage
