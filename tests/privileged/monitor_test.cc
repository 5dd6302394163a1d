// SPDX-License-Identifier: Apache-2.0
// The kernel monitor against real processes: monitor_helper performs each file action,
// failed syscall and process event under `agentcage trace`; the JSON lines are parsed back
// and every field the issue names is asserted.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "agentcage/v1/event.pb.h"
#include "core/events/event_json.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and creates cgroups"

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
}

std::string real(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? buf : p;
}

std::vector<v1::Event> parse_events(const std::string& text) {
  std::vector<v1::Event> out;
  for (const auto& l : testing::lines(text)) {
    v1::Event ev;
    auto st = core::message_from_json(l, &ev);  // our JSON: argv and paths are bytes, not base64
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message()) << " not an event: " << l;
    out.push_back(ev);
  }
  return out;
}

bool wait_for_file(const std::string& path) {
  for (int i = 0; i < 1000; ++i) {
    if (access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

using Pred = std::function<bool(const v1::Event&)>;

std::vector<v1::Event> select(const std::vector<v1::Event>& evs, const Pred& p) {
  std::vector<v1::Event> out;
  for (const auto& e : evs)
    if (p(e)) out.push_back(e);
  return out;
}

std::string dump(const std::vector<v1::Event>& evs) {
  std::string s;
  for (const auto& e : evs)
    if (e.has_file() || e.has_syscall() || e.has_exec() || e.has_exit()) {
      std::string j;
      google::protobuf::util::MessageToJsonString(e, &j);
      s += j + "\n";
    }
  return s;
}

// A prepared directory and the events of one `monitor_helper scenario` run.
class Scenario : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    dir_ = real(testing::temp_dir());
    chmod(dir_.c_str(), 0755);  // nobody must reach "secret" to be refused by its mode
    mkdir((dir_ + "/sub").c_str(), 0755);
    write_file(dir_ + "/target.txt", "t\n", 0644);
    symlink((dir_ + "/target.txt").c_str(), (dir_ + "/link").c_str());
    write_file(dir_ + "/secret", "s\n", 0600);
    write_file(dir_ + "/script.sh", "#!/bin/sh\nexit 0\n", 0755);
    auto r = run({AGENTCAGE_BIN, "trace", "--output", dir_ + "/ev.json", "--", MONITOR_HELPER_BIN, "scenario", dir_});
    status_ = r.status;
    err_ = r.err;
    events_ = parse_events(read_all(dir_ + "/ev.json"));
    for (const auto& e : events_)
      if (e.has_exec() && e.exec().filename() == MONITOR_HELPER_BIN) helper_ = e.process();
  }

  void SetUp() override {
    REQUIRE_ROOT();
    ASSERT_EQ(status_, 0) << err_;
    ASSERT_NE(helper_.pid(), 0u) << "no exec event for the helper\n" << dump(events_);
  }

  // File events with this op and path; `syscall` narrows to one call ("chmod", not the
  // fchmod that resolves to the same path).
  std::vector<v1::Event> files(const std::string& op, const std::string& path, const std::string& syscall = "") const {
    return select(events_, [&](const v1::Event& e) {
      return e.has_file() && e.file().op() == op && e.file().path() == path &&
             (syscall.empty() || e.file().syscall() == syscall);
    });
  }

  static std::string dir_;
  static int status_;
  static std::string err_;
  static std::vector<v1::Event> events_;
  static v1::Process helper_;
};
std::string Scenario::dir_;
int Scenario::status_ = -1;
std::string Scenario::err_;
std::vector<v1::Event> Scenario::events_;
v1::Process Scenario::helper_;

TEST_F(Scenario, RelativeOpenViaDirfdIsResolvedInTheKernel) {
  auto opens = files("open", dir_ + "/target.txt");
  auto via_dirfd = select(opens, [](const v1::Event& e) {
    return e.file().syscall() == "openat" && e.file().dirfd() >= 0;
  });
  ASSERT_EQ(via_dirfd.size(), 1u) << dump(events_);
  const auto& f = via_dirfd[0].file();
  EXPECT_TRUE(f.path_resolved());
  EXPECT_GE(f.result(), 0);
  EXPECT_EQ(via_dirfd[0].process().pid(), helper_.pid());
  EXPECT_EQ(via_dirfd[0].process().exec_id(), helper_.exec_id());

  auto openat2 = select(opens, [](const v1::Event& e) { return e.file().syscall() == "openat2"; });
  ASSERT_EQ(openat2.size(), 1u) << dump(events_);
  EXPECT_TRUE(openat2[0].file().path_resolved());
}

TEST_F(Scenario, SymlinkAndProcSelfRootOpensRecordTheRealPath) {
  // Opens of link and of /proc/self/root/<dir>/target.txt both come out as target.txt:
  // three openat records in all with the dirfd one; none names the link or /proc.
  auto opens = select(files("open", dir_ + "/target.txt"),
                      [](const v1::Event& e) { return e.file().syscall() == "openat" && e.file().dirfd() == -100; });
  EXPECT_EQ(opens.size(), 2u) << dump(events_);
  for (const auto& e : opens) EXPECT_TRUE(e.file().path_resolved());
  for (const auto& e : events_)
    if (e.has_file() && e.file().op() == "open" && e.process().pid() == helper_.pid()) {
      EXPECT_EQ(e.file().path().find("/proc/self/root"), std::string::npos) << e.file().path();
      EXPECT_NE(e.file().path(), dir_ + "/link");
    }
}

TEST_F(Scenario, FailedOpenHasThePathAsGivenAndTheErrno) {
  auto f = files("open", dir_ + "/missing");
  ASSERT_EQ(f.size(), 1u) << dump(events_);
  EXPECT_FALSE(f[0].file().path_resolved());
  EXPECT_EQ(f[0].file().result(), -ENOENT);
  EXPECT_EQ(f[0].file().error(), "ENOENT");
}

TEST_F(Scenario, CreatRenameMkdirRmdir) {
  auto c = files("creat", dir_ + "/new.txt");
  ASSERT_EQ(c.size(), 1u) << dump(events_);
  EXPECT_TRUE(c[0].file().path_resolved());
  EXPECT_EQ(c[0].file().mode(), 0640u);

  auto r = files("rename", dir_ + "/new.txt");
  ASSERT_EQ(r.size(), 1u) << dump(events_);
  EXPECT_EQ(r[0].file().path2(), dir_ + "/renamed.txt");
  EXPECT_EQ(r[0].file().result(), 0);

  auto m = files("mkdir", dir_ + "/d");
  ASSERT_EQ(m.size(), 1u) << dump(events_);
  EXPECT_EQ(m[0].file().mode(), 0700u);
  EXPECT_EQ(files("rmdir", dir_ + "/d").size(), 1u) << dump(events_);
}

TEST_F(Scenario, LinkSymlinkChmodChownTruncateSetxattrUnlink) {
  auto l = files("link", dir_ + "/renamed.txt");
  ASSERT_EQ(l.size(), 1u) << dump(events_);
  EXPECT_EQ(l[0].file().path2(), dir_ + "/hard");

  auto s = files("symlink", dir_ + "/sym");
  ASSERT_EQ(s.size(), 1u) << dump(events_);
  EXPECT_EQ(s[0].file().path2(), "renamed.txt");

  auto chmods = files("chmod", dir_ + "/renamed.txt", "chmod");
  ASSERT_EQ(chmods.size(), 1u) << dump(events_);
  EXPECT_EQ(chmods[0].file().mode(), 0600u);

  auto ch = files("chown", dir_ + "/renamed.txt", "chown");
  ASSERT_EQ(ch.size(), 1u) << dump(events_);
  EXPECT_EQ(ch[0].file().owner_uid(), 1u);
  EXPECT_EQ(ch[0].file().owner_gid(), 2u);

  EXPECT_EQ(files("truncate", dir_ + "/renamed.txt", "truncate").size(), 1u) << dump(events_);
  auto x = files("setxattr", dir_ + "/renamed.txt", "setxattr");
  ASSERT_EQ(x.size(), 1u) << dump(events_);
  EXPECT_EQ(x[0].file().xattr_name(), "user.agentcage");
  EXPECT_EQ(x[0].file().result(), 0) << "ext4/tmpfs /tmp takes user xattrs";
  EXPECT_EQ(files("unlink", dir_ + "/hard").size(), 1u) << dump(events_);
}

TEST_F(Scenario, FdBasedCallsAreResolvedAndAtCallsKeepTheirDirfd) {
  const std::string f = dir_ + "/renamed.txt";
  auto by_syscall = [&](const std::string& name) {
    return select(events_, [&](const v1::Event& e) { return e.has_file() && e.file().syscall() == name; });
  };
  for (const char* name : {"fchmod", "fchown", "ftruncate", "fsetxattr"}) {
    auto evs = by_syscall(name);
    ASSERT_EQ(evs.size(), 1u) << name << "\n" << dump(events_);
    EXPECT_EQ(evs[0].file().path(), f) << name;
    EXPECT_TRUE(evs[0].file().path_resolved()) << name;
    EXPECT_EQ(evs[0].file().result(), 0) << name;
    EXPECT_GE(evs[0].file().dirfd(), 0) << name << ": the fd acted on";
  }
  EXPECT_EQ(by_syscall("fchmod")[0].file().mode(), 0644u);
  EXPECT_EQ(by_syscall("fchown")[0].file().owner_uid(), 3u);
  EXPECT_EQ(by_syscall("fchown")[0].file().owner_gid(), 4u);
  EXPECT_EQ(by_syscall("fsetxattr")[0].file().xattr_name(), "user.fd");

  auto mk = by_syscall("mkdirat");
  ASSERT_EQ(mk.size(), 1u) << dump(events_);
  EXPECT_EQ(mk[0].file().op(), "mkdir");
  EXPECT_EQ(mk[0].file().path(), "../d2");
  EXPECT_EQ(mk[0].file().mode(), 0755u);
  EXPECT_GE(mk[0].file().dirfd(), 0);
  auto rm = by_syscall("unlinkat");
  ASSERT_EQ(rm.size(), 1u) << dump(events_);
  EXPECT_EQ(rm[0].file().op(), "rmdir") << "unlinkat with AT_REMOVEDIR";
  EXPECT_EQ(rm[0].file().dirfd(), mk[0].file().dirfd());
  auto chm = by_syscall("fchmodat");
  ASSERT_EQ(chm.size(), 1u) << dump(events_);
  EXPECT_EQ(chm[0].file().mode(), 0640u);
  auto rn = by_syscall("renameat2");
  ASSERT_EQ(rn.size(), 1u) << dump(events_);
  EXPECT_EQ(rn[0].file().path(), "../renamed.txt");
  EXPECT_EQ(rn[0].file().path2(), dir_ + "/renamed2.txt");
  EXPECT_EQ(rn[0].file().result(), 0);
}

TEST_F(Scenario, EaccesAndEpermAreRecordedAsFailedSyscalls) {
  auto open = files("open", dir_ + "/secret");
  ASSERT_EQ(open.size(), 1u) << dump(events_);
  EXPECT_EQ(open[0].file().error(), "EACCES");
  EXPECT_EQ(open[0].process().uid(), 65534u);
  auto chmod_ev = files("chmod", dir_ + "/secret");
  ASSERT_EQ(chmod_ev.size(), 1u) << dump(events_);
  EXPECT_EQ(chmod_ev[0].file().error(), "EPERM");

  auto denied = select(events_, [&](const v1::Event& e) {
    return e.has_syscall() && e.process().pid() == open[0].process().pid();
  });
  ASSERT_EQ(denied.size(), 2u) << dump(events_);
  EXPECT_EQ(denied[0].syscall().name(), "openat");
  EXPECT_EQ(denied[0].syscall().error(), "EACCES");
  EXPECT_EQ(denied[0].syscall().result(), -EACCES);
  EXPECT_EQ(denied[1].syscall().name(), "chmod");
  EXPECT_EQ(denied[1].syscall().error(), "EPERM");
  // The child is attributed to the helper that forked it.
  EXPECT_EQ(denied[0].process().parent_exec_id(), helper_.exec_id());
}

TEST_F(Scenario, ScriptExecRecordsScriptAndInterpreter) {
  auto ex = select(events_, [&](const v1::Event& e) {
    return e.has_exec() && e.exec().filename() == dir_ + "/script.sh";
  });
  ASSERT_EQ(ex.size(), 1u) << dump(events_);
  EXPECT_EQ(ex[0].exec().interpreter(), "/bin/sh");
  EXPECT_EQ(ex[0].process().binary(), real("/bin/sh"));
  EXPECT_EQ(ex[0].exec().result(), 0);
  EXPECT_EQ(ex[0].process().parent_exec_id(), helper_.exec_id());
  EXPECT_EQ(ex[0].process().cwd(), real(std::string(get_current_dir_name())));
  // The kernel passes the interpreter the script's path; the original argv follows.
  ASSERT_GE(ex[0].process().argv_size(), 3);
  EXPECT_EQ(ex[0].process().argv(1), dir_ + "/script.sh");
  EXPECT_EQ(ex[0].process().argv(2), "arg1");
}

TEST_F(Scenario, FailedExecIsRecorded) {
  auto ex = select(events_, [](const v1::Event& e) {
    return e.has_exec() && e.exec().filename() == "/nonexistent/agentcage-missing";
  });
  ASSERT_EQ(ex.size(), 1u) << dump(events_);
  EXPECT_EQ(ex[0].exec().result(), -ENOENT);
  EXPECT_EQ(ex[0].exec().error(), "ENOENT");
  ASSERT_EQ(ex[0].exec().argv_size(), 2);
  EXPECT_EQ(ex[0].exec().argv(1), "-x");
}

TEST_F(Scenario, ExitBySignal) {
  auto killed = select(events_, [&](const v1::Event& e) {
    return e.has_exit() && e.exit().signal() == SIGKILL && e.process().ppid() == helper_.pid();
  });
  ASSERT_EQ(killed.size(), 1u) << dump(events_);
  EXPECT_EQ(killed[0].process().parent_exec_id(), helper_.exec_id());
  auto helper_exit = select(events_, [&](const v1::Event& e) {
    return e.has_exit() && e.process().pid() == helper_.pid();
  });
  ASSERT_EQ(helper_exit.size(), 1u);
  EXPECT_EQ(helper_exit[0].exit().code(), 0);
  EXPECT_EQ(helper_exit[0].exit().signal(), 0);
}

// File events of a process outside the sandbox never reach a sandbox's stream; with
// --host they do. The control makes the filter test able to fail.
TEST(Monitor, OutsideFileActivityOnlyInHostMode) {
  REQUIRE_ROOT();
  auto dir = real(testing::temp_dir());
  const std::string marker = dir + "/outside-marker";
  write_file(marker, "m\n", 0644);
  for (bool host : {false, true}) {
    std::vector<std::string> argv = {AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json"};
    if (host) argv.push_back("--host");
    // The sandboxed command starts only once the programs are attached: its "ready" file
    // says the monitor is live (loading takes from 0.3 s to seconds on a busy machine).
    const std::string ready = dir + (host ? "/ready-host" : "/ready-sandbox");
    for (auto a : {"--", "sh", "-c"}) argv.push_back(a);
    argv.push_back("touch " + ready + "; sleep 1");
    pid_t tracer = testing::start(argv, dir + "/log");
    ASSERT_TRUE(wait_for_file(ready)) << read_all(dir + "/log");
    ASSERT_EQ(run({MONITOR_HELPER_BIN, "flood", "3", marker}).status, 0);
    ASSERT_EQ(testing::wait_status(tracer), 0) << read_all(dir + "/log");
    auto evs = parse_events(read_all(dir + "/ev.json"));
    auto seen = select(evs, [&](const v1::Event& e) { return e.has_file() && e.file().path() == marker; });
    if (host) {
      EXPECT_EQ(seen.size(), 3u) << "host mode must record the outside process";
      for (const auto& e : seen) EXPECT_TRUE(e.host_mode());
    } else {
      EXPECT_TRUE(seen.empty()) << "an outside process leaked into the sandbox's events";
    }
  }
}

// Every program on sys_exit runs on every syscall of every process on the host: agentcage
// attaches exactly one (file actions, denials, failed execs, accept results and network
// kill delivery all ride on it). Counted from the kernel's program list while a trace
// runs: programs attached to btf_trace_sys_exit that write the ring buffer the tracer
// holds (found in its /proc fdinfo), so another agentcage on the machine is not counted.
TEST(Monitor, OneProgramOnSysExitPerLoadedMonitor) {
  REQUIRE_ROOT();
  auto dir = real(testing::temp_dir());
  const std::string ready = dir + "/ready";
  pid_t tracer = testing::start({AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json", "--", "sh", "-c",
                                 "touch " + ready + "; sleep 2"},
                                dir + "/log");
  ASSERT_TRUE(wait_for_file(ready)) << read_all(dir + "/log");
  std::map<uint32_t, int> per_ring;  // the tracer's ring map ids -> sys_exit programs using them
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(tracer) + "/fdinfo")) {
    std::string info = read_all(e.path());
    if (info.find("map_type:\t27\n") == std::string::npos) continue;  // BPF_MAP_TYPE_RINGBUF
    auto at = info.find("map_id:\t");
    if (at != std::string::npos) per_ring[static_cast<uint32_t>(std::stoul(info.substr(at + 8)))] = 0;
  }
  ASSERT_FALSE(per_ring.empty()) << "the tracer holds no ring buffer";
  btf* vmlinux = btf__load_vmlinux_btf();
  ASSERT_NE(vmlinux, nullptr);
  for (uint32_t id = 0; bpf_prog_get_next_id(id, &id) == 0;) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t map_ids[64];
    info.nr_map_ids = 64;
    info.map_ids = reinterpret_cast<uintptr_t>(map_ids);
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == BPF_PROG_TYPE_TRACING && info.attach_btf_id) {
      const btf_type* t = btf__type_by_id(vmlinux, info.attach_btf_id);
      const char* name = t ? btf__name_by_offset(vmlinux, t->name_off) : nullptr;
      if (name && std::string(name) == "btf_trace_sys_exit") {
        for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 64); ++i)
          if (auto it = per_ring.find(map_ids[i]); it != per_ring.end()) it->second++;
      }
    }
    ::close(fd);
  }
  btf__free(vmlinux);
  ASSERT_EQ(testing::wait_status(tracer), 0) << read_all(dir + "/log");
  int total = 0;
  for (auto [ring, n] : per_ring) total += n;
  EXPECT_EQ(total, 1) << "programs on sys_exit writing the tracer's ring";
}

// A ring too small for a burst: records are lost, and the loss is counted in the kernel,
// reported in-band as Loss events and at the end on stderr. Nothing vanishes silently:
// delivered + lost accounts for every open.
TEST(Monitor, FloodedRingReportsLossInBandAndInCounters) {
  REQUIRE_ROOT();
  auto dir = real(testing::temp_dir());
  const std::string target = dir + "/t";
  write_file(target, "t\n", 0644);
  const int n = 100000;
  // The reader stalls for the first second (test hook): the flood must overrun the ring.
  auto r = run({"env", "AGENTCAGE_TEST_READER_STALL_MS=1000", AGENTCAGE_BIN, "trace", "--ring-bytes", "65536",
                "--output", dir + "/ev.json", "--", MONITOR_HELPER_BIN, "flood", std::to_string(n), target});
  ASSERT_EQ(r.status, 0) << r.err;
  auto evs = parse_events(read_all(dir + "/ev.json"));
  uint64_t full = 0, shed = 0, delivered = 0;
  for (const auto& e : evs) {
    if (e.has_loss()) {
      // File records stop at the ring's share for them (shed); what still finds it full is
      // counted as such.
      EXPECT_TRUE(e.loss().reason() == "ringbuf_full" || e.loss().reason() == "ringbuf_shed") << e.loss().reason();
      EXPECT_EQ(e.loss().where(), "kernel");
      EXPECT_GT(e.loss().count(), 0u);
      (e.loss().reason() == "ringbuf_full" ? full : shed) += e.loss().count();
    }
    if (e.has_file() && e.file().path() == target) ++delivered;
  }
  EXPECT_GT(full + shed, 0u) << "a 64 KiB ring cannot hold " << n << " records";
  EXPECT_GE(delivered + full + shed, static_cast<uint64_t>(n)) << "records vanished without a loss record";
  EXPECT_LE(delivered, static_cast<uint64_t>(n));
  EXPECT_NE(r.err.find("ringbuf_full=" + std::to_string(full)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" shed=" + std::to_string(shed)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("events lost"), std::string::npos) << r.err;
}

// Issue 11 item 7: a loop of identical failures is folded in the kernel, not flooded
// into the ring: a handful of records whose counts (1 + repeats) add up to every attempt,
// no loss; a different failure in the middle of the loop is never folded into it.
TEST(Monitor, RepeatedFailuresAreFoldedWithAnExactCount) {
  REQUIRE_ROOT();
  auto dir = real(testing::temp_dir());
  const std::string missing = dir + "/missing", other = dir + "/other";
  const uint64_t n = 300000;
  auto r = run({AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json", "--", MONITOR_HELPER_BIN, "failflood",
                std::to_string(n), missing, other});
  ASSERT_EQ(r.status, 0) << r.err;
  uint64_t attempts = 0, records = 0;
  std::map<std::string, int> others;
  for (const auto& e : parse_events(read_all(dir + "/ev.json"))) {
    EXPECT_FALSE(e.has_loss()) << e.loss().reason() << " " << e.loss().count();
    if (!e.has_file()) continue;
    const auto& f = e.file();
    if (f.path() == missing) {
      EXPECT_EQ(f.error(), "ENOENT");
      ++records;
      attempts += 1 + f.repeats();
    } else if (f.path().rfind(other, 0) == 0) {
      ++others[f.path()];
      EXPECT_EQ(f.repeats(), 0u) << f.path();
    }
  }
  EXPECT_EQ(attempts, n) << records << " records";
  EXPECT_LT(records, n / 1000) << "identical failures were not folded";
  EXPECT_EQ(others.size(), 10u);
  for (const auto& [p, c] : others) EXPECT_EQ(c, 1) << p;
}

// Issue 11 item 7: failures that cannot fold (every path different) fill at most the
// ring's share for file records: the process records after them (100 fork+exec+exit,
// while the reader is stalled) all arrive, nothing finds the ring full, and what the
// share refused is counted in-band (ringbuf_shed) so every attempt is accounted for.
TEST(Monitor, AFloodOfDistinctFailuresCannotCrowdOutProcessRecords) {
  REQUIRE_ROOT();
  auto dir = real(testing::temp_dir());
  const uint64_t n = 100000;
  const int m = 100;
  auto r = run({"env", "AGENTCAGE_TEST_READER_STALL_MS=1500", AGENTCAGE_BIN, "trace", "--ring-bytes", "4194304",
                "--output", dir + "/ev.json", "--", MONITOR_HELPER_BIN, "distinct", std::to_string(n),
                dir + "/miss-", std::to_string(m)});
  ASSERT_EQ(r.status, 0) << r.err;
  uint64_t full = 0, shed = 0, delivered = 0;
  int execs = 0, exits = 0;
  for (const auto& e : parse_events(read_all(dir + "/ev.json"))) {
    if (e.has_loss()) (e.loss().reason() == "ringbuf_shed" ? shed : full) += e.loss().count();
    if (e.has_file() && e.file().path().rfind(dir + "/miss-", 0) == 0) ++delivered;
    if (e.has_exec() && e.exec().result() == 0 && e.process().binary() == "/usr/bin/true") ++execs;
    if (e.has_exit() && e.process().binary() == "/usr/bin/true" && e.exit().code() == 0) ++exits;
  }
  EXPECT_GT(shed, 0u) << "a 4 MiB ring cannot hold " << n << " file records";
  EXPECT_EQ(full, 0u) << "a record found the ring full: the reserve did not hold";
  EXPECT_GE(delivered + shed, n);
  EXPECT_EQ(execs, m);
  EXPECT_EQ(exits, m);
}

}  // namespace
}  // namespace agentcage
