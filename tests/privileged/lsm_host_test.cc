// SPDX-License-Identifier: Apache-2.0
// BPF LSM where it is missing (this host: BPF LSM programs fail to load with EPERM):
// the monitor must start without them, say so, keep recording, and refuse deny rules it
// cannot enforce. Where BPF LSM is active these tests skip; the lsm tier covers it.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>

#include "core/kernel/bpf_monitor.h"
#include "core/confine/cgroup.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

bool bpf_lsm_listed() {
  auto l = core::read_file("/sys/kernel/security/lsm");
  if (!l) return false;
  std::stringstream list(l->substr(0, l->find('\n')));
  for (std::string name; std::getline(list, name, ',');)
    if (name == "bpf") return true;
  return false;
}

#define REQUIRE_NO_BPF_LSM()                                                              \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";                  \
  if (bpf_lsm_listed()) GTEST_SKIP() << "needs a kernel without BPF LSM (this one has it: " \
                                        "the lsm tier tests it)"

TEST(BpfLsmMissing, MonitorStartsWithoutLsmAndSaysWhy) {
  REQUIRE_NO_BPF_LSM();
  core::MonitorOptions o;
  o.ring_bytes = 1u << 20;
  auto m = core::BpfMonitor::start(o);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE((*m)->lsm_active());
  EXPECT_EQ((*m)->lsm_status().rfind("off: ", 0), 0u) << (*m)->lsm_status();

  // Deny rules it cannot enforce are refused, naming the missing feature.
  core::InodeRule r{};
  r.key.sandbox = 1;
  r.key.ino = 1;
  r.rule.deny = AC_LSM_DENY_OPEN;
  auto st = (*m)->lsm_deny(std::span<const core::InodeRule>(&r, 1));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("BPF LSM"), std::string::npos) << st.error().message();
}

TEST(BpfLsmMissing, NotRequestedIsOffWithoutTrying) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";
  core::MonitorOptions o;
  o.ring_bytes = 1u << 20;
  o.lsm = false;
  auto m = core::BpfMonitor::start(o);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_FALSE((*m)->lsm_active());
  EXPECT_EQ((*m)->lsm_status(), "off: not requested");
}

// The id the kernel gives the next program: ids are handed out in order, so the distance
// between two of them counts every program loaded in between, freed or not.
uint32_t next_prog_id() {
  const bpf_insn insns[] = {{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
                            {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0}};
  int fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "ac_id_probe", "GPL", insns, 2, nullptr);
  if (fd < 0) return 0;
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  uint32_t id = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
  ::close(fd);
  return id;
}

// A kernel that refuses BPF LSM is found out by a two-instruction probe, not by verifying
// the whole object and loading it a second time without its LSM programs (which was most
// of every run's start-up here). Counted in program ids: the object's programs still
// loaded, plus what was loaded and freed on the way (libbpf's and our probes), must not
// come to a second copy of the object.
TEST(BpfLsmMissing, RefusedLsmIsProbedNotPaidForWithASecondLoad) {
  REQUIRE_NO_BPF_LSM();
  uint32_t before = next_prog_id();
  ASSERT_NE(before, 0u) << std::strerror(errno);
  core::MonitorOptions o;
  o.ring_bytes = 1u << 20;
  auto m = core::BpfMonitor::start(o);
  ASSERT_TRUE(m) << m.error().message();
  uint32_t after = next_prog_id();
  int live = 0;
  for (uint32_t id = before; bpf_prog_get_next_id(id, &id) == 0 && id < after;) ++live;
  int freed = static_cast<int>(after - before - 1) - live;
  EXPECT_GT(live, 10) << "the monitor's programs";
  EXPECT_LT(freed, live) << "programs loaded and freed while the monitor started: " << freed << ", live: " << live
                         << " (" << (*m)->lsm_status() << ")";
  EXPECT_NE((*m)->lsm_status().find("refused a BPF LSM program"), std::string::npos) << (*m)->lsm_status();
}

TEST(BpfLsmMissing, TraceStillRecordsWithoutLsm) {
  REQUIRE_NO_BPF_LSM();
  auto r = run({AGENTCAGE_BIN, "trace", "-o", "text", "--", "/bin/echo", "lsm-less"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("exec"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/bin/echo lsm-less"), std::string::npos) << r.out;
  // The expected fallback is not a warning on every run.
  EXPECT_EQ(r.err.find("libbpf"), std::string::npos) << r.err;
}

TEST(BpfLsmMissing, DenyPathFailsClosed) {
  REQUIRE_NO_BPF_LSM();
  for (const char* cmd : {"trace", "run"}) {
    std::vector<std::string> argv = {AGENTCAGE_BIN, cmd};
    if (std::string(cmd) == "run") argv.push_back("--no-daemon");
    for (const char* a : {"--deny-path", "/etc/hostname", "--", "sh", "-c", "echo command-ran"}) argv.push_back(a);
    auto r = run(argv);
    EXPECT_NE(r.status, 0) << cmd;
    EXPECT_EQ(r.out.find("command-ran"), std::string::npos) << cmd << ": the command ran unprotected";
    EXPECT_NE(r.err.find("need BPF LSM"), std::string::npos) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  }
}

TEST(BpfLsmMissing, DenyPathToNothingIsRefusedBeforeStart) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";
  auto r = run({AGENTCAGE_BIN, "trace", "--deny-path", "/nonexistent/agentcage-secret", "--", "echo", "command-ran"});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out.find("command-ran"), std::string::npos);
  EXPECT_NE(r.err.find("/nonexistent/agentcage-secret"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace agentcage
