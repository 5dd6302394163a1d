// SPDX-License-Identifier: Apache-2.0
// Confinement against real processes: apply_in_child in a forked child (never in the test
// process), and run_session with a ConfinePolicy end to end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/confine/cgroup.h"
#include "core/confine/confine.h"
#include "core/sandbox/session.h"
#include "support/subprocess.h"

namespace agentcage::core {
namespace {

namespace fs = std::filesystem;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: confinement drops root's privileges and creates cgroups"

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A field of /proc/self/status ("CapEff", "NoNewPrivs", "Seccomp").
std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      auto v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return {};
}

ConfinePolicy base_policy(const std::string& ws) {
  ConfinePolicy p;
  p.fs.read = {"/etc", "/proc", "/dev"};
  p.fs.exec = {"/usr", "/bin", "/lib", "/lib64", "/sbin"};
  p.fs.write = {ws, "/dev/null"};
  return p;
}

class Confine : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_ROOT();
    kf_ = probe_kernel_features();
    if (kf_.landlock_abi < 1) GTEST_SKIP() << "needs Landlock";
    ws_ = testing::temp_dir();
    ::chmod(ws_.c_str(), 0777);
  }
  void TearDown() override {
    if (!ws_.empty()) fs::remove_all(ws_);
  }

  Result<SessionResult> run(const ConfinePolicy& p, const std::string& script) {
    SessionOptions so;
    so.argv = {"/bin/sh", "-c", script};
    so.confine = p;
    return run_session(so);
  }

  KernelFeatures kf_;
  std::string ws_;
};

// Prepares `p`, forks, applies it in the child and returns what the child saw: its
// /proc/self/status plus "Key: value" lines for a few probes.
std::string apply_and_probe(const ConfinePolicy& p, const KernelFeatures& kf, const std::string& ws) {
  auto pc = prepare_confinement(p, kf, ConfineContext{"test-apply-" + std::to_string(::getpid()), ""});
  if (!pc) return "FAIL prepare: " + pc.error().message();
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "FAIL pipe";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    const char* what = "";
    int e = apply_in_child(**pc, &what);
    std::string out;
    if (e != 0) {
      out = std::string("FAIL ") + what + ": " + strerror(e);
    } else {
      int fd = ::open("/proc/self/status", O_RDONLY);
      char buf[8192] = {};
      ssize_t n = fd >= 0 ? ::read(fd, buf, sizeof buf - 1) : -1;
      out = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "no status";
      auto probe = [&](const char* key, int rc) { out += std::string("\n") + key + ": " + (rc < 0 ? strerror(errno) : "ok"); };
      probe("RootOpen", ::open("/root", O_RDONLY | O_DIRECTORY));    // in no list
      probe("EtcWrite", ::open("/etc/hostname", O_WRONLY));          // read-only tree
      probe("WsWrite", ::open((ws + "/w").c_str(), O_WRONLY | O_CREAT, 0644));
      out += "\nSecurebits: " + std::to_string(::prctl(PR_GET_SECUREBITS));
    }
    (void)!::write(pipefd[1], out.data(), out.size());
    _exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  ::waitpid(pid, nullptr, 0);
  return out;
}

TEST_F(Confine, ApplyInChildDropsEverything) {
  std::string out = apply_and_probe(base_policy(ws_), kf_, ws_);
  ASSERT_EQ(out.rfind("FAIL", 0), std::string::npos) << out;
  EXPECT_EQ(status_field(out, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(out, "CapPrm"), "0000000000000000");
  EXPECT_EQ(status_field(out, "CapBnd"), "0000000000000000");
  EXPECT_EQ(status_field(out, "CapAmb"), "0000000000000000");
  EXPECT_EQ(status_field(out, "NoNewPrivs"), "1");
  EXPECT_EQ(status_field(out, "Seccomp"), "2");
  EXPECT_EQ(status_field(out, "RootOpen"), strerror(ENOENT));  // absent from the view
  EXPECT_NE(status_field(out, "EtcWrite"), "ok");
  EXPECT_EQ(status_field(out, "WsWrite"), "ok");
  EXPECT_NE(status_field(out, "Securebits"), "0");
}

TEST_F(Confine, LandlockWithoutTheView) {
  auto p = base_policy(ws_);
  p.fs.private_view = false;
  std::string out = apply_and_probe(p, kf_, ws_);
  ASSERT_EQ(out.rfind("FAIL", 0), std::string::npos) << out;
  EXPECT_EQ(status_field(out, "RootOpen"), strerror(EACCES));
  EXPECT_EQ(status_field(out, "EtcWrite"), strerror(EACCES));
  EXPECT_EQ(status_field(out, "WsWrite"), "ok");
}

TEST_F(Confine, FailsClosedOnMissingMechanisms) {
  auto p = base_policy(ws_);
  KernelFeatures no_ll = kf_;
  no_ll.landlock_abi = 0;
  auto r = prepare_confinement(p, no_ll, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("Landlock"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("hint:"), std::string::npos);
  EXPECT_NE(r.error().message().find("mode: audit"), std::string::npos);

  KernelFeatures no_sc = kf_;
  no_sc.seccomp_filter = false;
  r = prepare_confinement(p, no_sc, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("seccomp"), std::string::npos);

  KernelFeatures abi3 = kf_;
  abi3.landlock_abi = 3;
  p.net.restrict = true;
  p.require_net_ports = true;
  r = prepare_confinement(p, abi3, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("ABI 4"), std::string::npos);
  // Not required: runs, and says what is not enforced.
  p.require_net_ports = false;
  r = prepare_confinement(p, abi3, {});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  bool gap = false;
  for (const auto& pv : (*r)->provenance()) gap |= !pv.enforced && pv.detail.find("ABI 4") != std::string::npos;
  EXPECT_TRUE(gap);

  // A required path that does not exist is an error naming it.
  auto req = base_policy(ws_);
  req.fs.required = {ws_ + "/does-not-exist"};
  r = prepare_confinement(req, kf_, {});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("does-not-exist"), std::string::npos) << r.error().message();

  // Only scoping asked, on a kernel without it: nothing to enforce, no empty ruleset error.
  auto scope_only = base_policy(ws_);
  scope_only.fs.restrict = false;
  KernelFeatures abi5 = kf_;
  abi5.landlock_abi = 5;
  r = prepare_confinement(scope_only, abi5, {});
  ASSERT_TRUE(r.has_value()) << r.error().message();

  // Audit mode starts anyway and records the gap.
  auto a = base_policy(ws_);
  a.audit_mode = true;
  r = prepare_confinement(a, no_ll, {});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  bool recorded = false;
  for (const auto& pv : (*r)->provenance()) recorded |= pv.mechanism == "landlock" && !pv.enforced;
  EXPECT_TRUE(recorded);
}

TEST_F(Confine, SessionReportsProvenanceAndPidsCgroup) {
  auto p = base_policy(ws_);
  p.max_pids = 16;
  p.fs.deny = {ws_ + "/hidden"};
  fs::create_directories(ws_ + "/hidden");
  std::string out = ws_ + "/cgroup.txt";
  auto r = run(p, "cat /proc/self/cgroup > " + out + "; ls " + ws_ + "/hidden 2>/dev/null && exit 3; exit 0");
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
  std::set<std::string> mechs;
  for (const auto& pv : r->enforcement) mechs.insert(pv.mechanism);
  for (const char* m : {"seccomp", "landlock", "mount_mask", "pids", "caps"}) EXPECT_TRUE(mechs.count(m)) << m;
  std::string cg = slurp(out);
  EXPECT_NE(cg.find("/agentcage/" + r->sandbox_id), std::string::npos) << cg;
  // Teardown removed the v1 pids cgroup (when that is the mechanism used here).
  auto mi = read_file("/proc/self/mountinfo");
  ASSERT_TRUE(mi.has_value());
  if (auto pids = find_cgroup1_mount(*mi, "pids")) {
    EXPECT_NE(cg.find("pids:/agentcage/" + r->sandbox_id), std::string::npos) << cg;
    EXPECT_FALSE(fs::exists(*pids + "/agentcage/" + r->sandbox_id));
  }
  EXPECT_FALSE(fs::exists("/run/agentcage/" + r->sandbox_id));
}

TEST_F(Confine, RlimitsAndUidSwitch) {
  auto p = base_policy(ws_);
  p.rlimits = {{RLIMIT_NOFILE, 64, 64}};
  p.uid = 65534;
  p.gid = 65534;
  std::string out = ws_ + "/ids.txt";
  auto r = run(p, "{ ulimit -n; id -u; id -g; id -G; } > " + out);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
  EXPECT_EQ(slurp(out), "64\n65534\n65534\n65534\n");
}

TEST_F(Confine, Namespaces) {
  auto p = base_policy(ws_);
  p.namespaces = {true, true, true};
  std::string out = ws_ + "/ns.txt";
  // Only the loopback device exists in a fresh network namespace; the hostname can change
  // without touching the host's.
  auto r = run(p, "wc -l < /proc/net/dev > " + out + "; readlink /proc/self/ns/net >> " + out);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->exit_status, 0);
  auto text = slurp(out);
  EXPECT_EQ(text.substr(0, 2), "3\n") << text;  // two header lines + lo
  auto host_ns = fs::read_symlink("/proc/self/ns/net").string();
  EXPECT_EQ(text.find(host_ns), std::string::npos) << text;
}

TEST_F(Confine, CommandOutsideExecListIsAClearError) {
  auto p = base_policy(ws_);
  p.fs.exec = {"/lib", "/lib64"};  // /bin/sh is not executable under this policy
  auto r = run(p, "true");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("filesystem.exec"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("hint:"), std::string::npos);
}

TEST_F(Confine, ChildStepFailureIsReportedByName) {
  auto p = base_policy(ws_);
  p.rlimits = {{RLIMIT_NOFILE, 128, 64}};  // soft above hard: EINVAL in the child
  auto r = run(p, "true");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("setrlimit"), std::string::npos) << r.error().message();
}

TEST_F(Confine, AuditModeLogsInsteadOfDenying) {
  std::string secret = ws_ + "/../agentcage-confine-secret-" + std::to_string(::getpid());
  std::ofstream(secret) << "s3cret\n";
  auto p = base_policy(ws_);
  p.seccomp.deny = {"mknodat", "mknod"};
  std::string script = "mkfifo " + ws_ + "/fifo && cat " + secret + " >/dev/null";
  auto enforced = run(p, script);
  ASSERT_TRUE(enforced.has_value()) << enforced.error().message();
  EXPECT_NE(enforced->exit_status, 0);
  p.audit_mode = true;
  fs::remove(ws_ + "/fifo");
  auto audited = run(p, script);
  ASSERT_TRUE(audited.has_value()) << audited.error().message();
  EXPECT_EQ(audited->exit_status, 0);
  fs::remove(secret);
}

}  // namespace
}  // namespace agentcage::core
