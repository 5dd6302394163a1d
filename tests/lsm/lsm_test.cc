// SPDX-License-Identifier: Apache-2.0
// The lsm tier: BPF LSM deny-by-inode against real processes. Runs inside the qemu guest
// (vagrant/run-lsm.sh, registered in CTest as one entry, label lsm) where the kernel has
// "bpf" among its active LSMs. Anywhere else each test skips saying so, unless
// AGENTCAGE_REQUIRE_LSM=1 (set by the CTest entry), which turns a missing BPF LSM into a
// failure so the tier can never pass without having run.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "agentcage/v1/event.pb.h"
#include "core/events/event_json.h"
#include "core/kernel/bpf_monitor.h"
#include "core/confine/cgroup.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

// Why this kernel cannot run the tier, or "" when it can.
std::string lsm_missing() {
  if (geteuid() != 0) return "needs root: loads BPF programs and creates cgroups";
  auto l = core::read_file("/sys/kernel/security/lsm");
  if (!l) return "needs BPF LSM: /sys/kernel/security/lsm is unreadable; run via vagrant/run-lsm.sh (ctest -L lsm)";
  std::stringstream list(l->substr(0, l->find('\n')));
  bool bpf = false;
  for (std::string name; std::getline(list, name, ',');) bpf = bpf || name == "bpf";
  if (!bpf)
    return "needs BPF LSM: the active LSMs (" + *l + ") lack bpf; run via vagrant/run-lsm.sh (ctest -L lsm)";
  return "";
}

class BpfLsm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto why = lsm_missing();
    if (why.empty()) return;
    const char* req = getenv("AGENTCAGE_REQUIRE_LSM");
    if (req && std::string(req) == "1") FAIL() << "AGENTCAGE_REQUIRE_LSM=1 but " << why;
    GTEST_SKIP() << why;
  }

  // A fresh directory with a secret, a hard link to it, an allowed file and a copy of
  // /bin/true (an executable the test may deny without touching the system's).
  void make_files() {
    dir = testing::temp_dir();
    secret = dir + "/secret";
    hard = dir + "/hard-link";
    allowed = dir + "/allowed";
    tool = dir + "/tool";
    std::ofstream(secret) << "TOP-SECRET\n";
    std::ofstream(allowed) << "fine\n";
    ASSERT_EQ(link(secret.c_str(), hard.c_str()), 0) << strerror(errno);
    auto r = run({"cp", "/bin/true", tool});
    ASSERT_EQ(r.status, 0) << r.err;
  }

  // `agentcage trace` with events to a file, so the command's own output stays apart.
  struct Traced {
    testing::ProcResult proc;
    std::vector<v1::Event> events;
  };
  Traced trace(const std::vector<std::string>& opts, const std::vector<std::string>& cmd) {
    std::string out = dir + "/events." + std::to_string(++traces) + ".json";
    std::vector<std::string> argv = {AGENTCAGE_BIN, "trace", "--output", out};
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.push_back("--");
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    Traced t;
    t.proc = run(argv);
    std::ifstream f(out);
    std::string line;
    while (std::getline(f, line)) {
      v1::Event ev;
      auto st = core::message_from_json(line, &ev);  // our JSON: argv and paths are bytes, not base64
      EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message()) << " not an event: " << line;
      t.events.push_back(ev);
    }
    return t;
  }

  static std::vector<v1::Violation> lsm_violations(const std::vector<v1::Event>& evs) {
    std::vector<v1::Violation> out;
    for (const auto& e : evs)
      if (e.has_violation() && e.violation().mechanism() == "bpf-lsm") out.push_back(e.violation());
    return out;
  }

  std::string dir, secret, hard, allowed, tool;
  int traces = 0;
};

TEST_F(BpfLsm, MonitorReportsActive) {
  core::MonitorOptions o;
  o.ring_bytes = 1u << 20;
  auto m = core::BpfMonitor::start(o);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE((*m)->lsm_active()) << (*m)->lsm_status();
  EXPECT_EQ((*m)->lsm_status().rfind("active", 0), 0u) << (*m)->lsm_status();
}

TEST_F(BpfLsm, DeniedFileOpenFailsWithEaccesAndIsReported) {
  make_files();
  auto t = trace({"--deny-path", secret}, {"cat", secret});
  EXPECT_EQ(t.proc.status, 1) << t.proc.err;
  EXPECT_EQ(t.proc.out.find("TOP-SECRET"), std::string::npos) << t.proc.out;
  EXPECT_NE(t.proc.err.find("Permission denied"), std::string::npos) << t.proc.err;
  auto v = lsm_violations(t.events);
  ASSERT_EQ(v.size(), 1u) << t.proc.err;
  EXPECT_EQ(v[0].action(), "deny");
  EXPECT_EQ(v[0].rule(), "deny-path " + secret);
  EXPECT_EQ(v[0].file().op(), "open");
  EXPECT_EQ(v[0].file().path(), secret);
  EXPECT_EQ(v[0].file().result(), -EACCES);
  EXPECT_EQ(v[0].file().error(), "EACCES");
  // The violation names the process that tried: cat, in this run's sandbox.
  for (const auto& e : t.events)
    if (e.has_violation()) {
      EXPECT_EQ(e.process().comm(), "cat");
      EXPECT_FALSE(e.sandbox_id().empty());
    }
}

TEST_F(BpfLsm, HardLinkToDeniedFileIsDenied) {
  make_files();
  auto t = trace({"--deny-path", secret}, {"cat", hard});
  EXPECT_EQ(t.proc.status, 1) << t.proc.err;
  EXPECT_EQ(t.proc.out.find("TOP-SECRET"), std::string::npos) << t.proc.out;
  auto v = lsm_violations(t.events);
  ASSERT_EQ(v.size(), 1u) << t.proc.err;
  EXPECT_EQ(v[0].file().path(), hard);  // the name used, resolved in the kernel
  EXPECT_EQ(v[0].rule(), "deny-path " + secret);  // the rule that named another link
}

TEST_F(BpfLsm, BindMountOfDeniedFileIsDenied) {
  make_files();
  std::string target = dir + "/bind-target";
  std::ofstream(target) << "";
  auto m = run({"mount", "--bind", secret, target});
  ASSERT_EQ(m.status, 0) << m.err;
  auto t = trace({"--deny-path", secret}, {"cat", target});
  run({"umount", target});
  EXPECT_EQ(t.proc.status, 1) << t.proc.err;
  EXPECT_EQ(t.proc.out.find("TOP-SECRET"), std::string::npos) << t.proc.out;
  ASSERT_EQ(lsm_violations(t.events).size(), 1u) << t.proc.err;
}

TEST_F(BpfLsm, AllowedFileOpensAndNothingIsReported) {
  make_files();
  auto t = trace({"--deny-path", secret}, {"cat", allowed});
  EXPECT_EQ(t.proc.status, 0) << t.proc.err;
  EXPECT_EQ(t.proc.out, "fine\n");
  EXPECT_TRUE(lsm_violations(t.events).empty());
}

TEST_F(BpfLsm, DescendantsAreDeniedToo) {
  make_files();
  auto t = trace({"--deny-path", secret}, {"sh", "-c", "sh -c 'cat " + secret + "'; echo rc=$?"});
  EXPECT_EQ(t.proc.status, 0) << t.proc.err;
  EXPECT_EQ(t.proc.out, "rc=1\n");
  EXPECT_EQ(lsm_violations(t.events).size(), 1u);
}

TEST_F(BpfLsm, DeniedExecFailsAtBprmCheckButTheFileStaysReadable) {
  make_files();
  auto t = trace({"--deny-exec", tool}, {"sh", "-c", tool + "; echo rc=$?; cat " + tool + " >/dev/null && echo readable"});
  EXPECT_EQ(t.proc.status, 0) << t.proc.err;
  // sh reports a failed exec of an existing file as 126 (EACCES).
  EXPECT_EQ(t.proc.out, "rc=126\nreadable\n") << t.proc.err;
  auto v = lsm_violations(t.events);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file().op(), "exec");
  EXPECT_EQ(v[0].file().path(), tool);
  EXPECT_NE(v[0].what().find("bprm_check_security"), std::string::npos) << v[0].what();
  EXPECT_EQ(v[0].rule(), "deny-exec " + tool);
  // The monitor records the attempt as a failed exec (EACCES); a successful one would mean
  // the image ran.
  int failed = 0;
  for (const auto& e : t.events) {
    if (!e.has_exec() || e.exec().filename() != tool) continue;
    EXPECT_LT(e.exec().result(), 0) << "the image ran";
    failed += e.exec().error() == "EACCES";
  }
  EXPECT_EQ(failed, 1);
}

TEST_F(BpfLsm, DenyPathStopsExecWhenTheImageIsOpened) {
  make_files();
  auto t = trace({"--deny-path", tool}, {"sh", "-c", tool + "; echo rc=$?"});
  EXPECT_EQ(t.proc.out, "rc=126\n") << t.proc.err;
  auto v = lsm_violations(t.events);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file().op(), "exec");
  EXPECT_NE(v[0].what().find("file_open"), std::string::npos) << v[0].what();
}

TEST_F(BpfLsm, RulesAreScopedToTheSandboxAndRemovedAfterIt) {
  make_files();
  // While a sandbox denies the secret, an untracked process (a sibling of the trace)
  // reads it: the rule is keyed by sandbox.
  auto t = trace({"--deny-path", secret}, {"sh", "-c", "cat " + secret + "; sleep 0.3"});
  EXPECT_EQ(lsm_violations(t.events).size(), 1u);
  std::ifstream f(secret);
  std::string s;
  std::getline(f, s);
  EXPECT_EQ(s, "TOP-SECRET");
  // A later sandbox without the rule reads it.
  auto t2 = trace({}, {"cat", secret});
  EXPECT_EQ(t2.proc.status, 0) << t2.proc.err;
  EXPECT_EQ(t2.proc.out, "TOP-SECRET\n");
  EXPECT_TRUE(lsm_violations(t2.events).empty());
}

// Where /sys/kernel/security is not mounted the LSM list cannot be read; the monitor
// then trusts BPF LSM only after its self-test saw lsm/file_open run.
TEST_F(BpfLsm, SelfTestConfirmsWhenTheLsmListIsUnreadable) {
  make_files();
  // A private mount namespace (unshare -m) so the guest's securityfs stays mounted.
  auto r = run({"unshare", "-m", "sh", "-c",
                "umount /sys/kernel/security && test ! -e /sys/kernel/security/lsm && "
                "AGENTCAGE_LOG=debug \"$0\" trace --output /dev/null --deny-path \"$1\" -- cat \"$1\"",
                AGENTCAGE_BIN, secret});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("bpf lsm: active (/sys/kernel/security/lsm unreadable"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
}

TEST_F(BpfLsm, RunDeniesAndReportsOnStderr) {
  make_files();
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--deny-path", secret, "--", "cat", secret});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.out.find("TOP-SECRET"), std::string::npos);
  EXPECT_NE(r.err.find("violation"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bpf-lsm"), std::string::npos) << r.err;
}

// The same binary in a guest booted without "bpf" in lsm= (CTest entry lsm_tier_inactive,
// AGENTCAGE_LSM_INACTIVE_GUEST=1): BPF LSM is compiled in, so the programs load and attach,
// but the kernel never calls them. Nothing may claim enforcement there.
class BpfLsmInactive : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* g = getenv("AGENTCAGE_LSM_INACTIVE_GUEST");
    if (!g || std::string(g) != "1")
      GTEST_SKIP() << "needs a guest booted without bpf in lsm= (ctest -R lsm_tier_inactive)";
    if (geteuid() != 0) FAIL() << "the guest runs tests as root";
    auto l = core::read_file("/sys/kernel/security/lsm");
    ASSERT_TRUE(l) << "the guest mounts securityfs";
    ASSERT_EQ(l->find("bpf"), std::string::npos) << "this guest has BPF LSM active: " << *l;
    dir = testing::temp_dir();
    secret = dir + "/secret";
    std::ofstream(secret) << "TOP-SECRET\n";
  }
  std::string dir, secret;
};

TEST_F(BpfLsmInactive, LsmListWithoutBpfMeansOff) {
  core::MonitorOptions o;
  o.ring_bytes = 1u << 20;
  auto m = core::BpfMonitor::start(o);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE((*m)->lsm_active());
  EXPECT_NE((*m)->lsm_status().find("do not include bpf"), std::string::npos) << (*m)->lsm_status();
}

TEST_F(BpfLsmInactive, SelfTestCatchesProgramsThatAttachButNeverRun) {
  // Hide the LSM list, so only the self-test can tell.
  auto r = run({"unshare", "-m", "sh", "-c",
                "umount /sys/kernel/security && AGENTCAGE_LOG=debug \"$0\" trace --deny-path \"$1\" -- "
                "sh -c 'echo command-ran; cat \"$1\"' x \"$1\"",
                AGENTCAGE_BIN, secret});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out.find("command-ran"), std::string::npos) << "the command ran unprotected";
  EXPECT_EQ(r.out.find("TOP-SECRET"), std::string::npos);
  EXPECT_NE(r.err.find("attached but never ran"), std::string::npos) << r.err;
}

TEST_F(BpfLsmInactive, MonitoringStillWorks) {
  auto r = run({AGENTCAGE_BIN, "trace", "-o", "text", "--", "cat", secret});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("TOP-SECRET"), std::string::npos);
  EXPECT_NE(r.out.find("exec"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace agentcage
