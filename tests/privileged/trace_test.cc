// SPDX-License-Identifier: Apache-2.0
// The end-to-end slice on the real kernel: `agentcage run` and `agentcage trace` as real
// processes; events parsed back from their JSON lines.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "agentcage/v1/event.pb.h"
#include "core/events/decoder.h"
#include "core/events/event_json.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and creates cgroups"

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

std::vector<v1::Event> execs_of(const std::vector<v1::Event>& evs, const std::string& filename) {
  std::vector<v1::Event> out;
  for (const auto& e : evs)
    if (e.has_exec() && e.exec().filename() == filename) out.push_back(e);
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

TEST(Trace, ReportsExecsWithArgvAndExits) {
  REQUIRE_ROOT();
  auto r = run({AGENTCAGE_BIN, "trace", "--", "sh", "-c", "true; /bin/echo hi"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto evs = parse_events(r.out.substr(r.out.find('\n') + 1));  // first line: "hi" from echo
  auto sh = execs_of(evs, "/usr/bin/sh");
  if (sh.empty()) sh = execs_of(evs, "/bin/sh");
  ASSERT_EQ(sh.size(), 1u) << r.out;
  EXPECT_EQ(sh[0].process().argv_size(), 3);
  EXPECT_EQ(sh[0].process().argv(2), "true; /bin/echo hi");
  EXPECT_FALSE(sh[0].sandbox_id().empty());

  auto echo = execs_of(evs, "/bin/echo");
  ASSERT_EQ(echo.size(), 1u) << r.out;
  ASSERT_EQ(echo[0].process().argv_size(), 2);
  EXPECT_EQ(echo[0].process().argv(0), "/bin/echo");
  EXPECT_EQ(echo[0].process().argv(1), "hi");
  EXPECT_EQ(echo[0].process().ppid(), sh[0].process().pid());
  EXPECT_EQ(echo[0].sandbox_id(), sh[0].sandbox_id());

  int exits = 0;
  for (const auto& e : evs)
    if (e.has_exit() && (e.process().pid() == echo[0].process().pid() || e.process().pid() == sh[0].process().pid())) {
      EXPECT_EQ(e.exit().code(), 0);
      ++exits;
    }
  EXPECT_EQ(exits, 2) << r.out;
}

TEST(Trace, JsonGoesToOutputFileAndTextFormatWorks) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  auto r = run({AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json", "--", "/bin/echo", "out"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(execs_of(parse_events(read_all(dir + "/ev.json")), "/bin/echo").size(), 1u);

  auto t = run({AGENTCAGE_BIN, "trace", "-o", "text", "--output", dir + "/ev.txt", "--", "/bin/true"});
  ASSERT_EQ(t.status, 0) << t.err;
  auto txt = read_all(dir + "/ev.txt");
  EXPECT_NE(txt.find("exec"), std::string::npos) << txt;
  EXPECT_NE(txt.find("/bin/true"), std::string::npos) << txt;
}

// `trace` takes the filters of `events`: --kind, --violations, and --exclude PATH-GLOB for
// the library noise; a violation is printed even on an excluded path, and the record the
// filters apply to is whole (the summary counts every violation).
TEST(Trace, KindViolationsAndExcludeFilterWhatIsPrinted) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  std::string ws = dir + "/ws";
  ASSERT_EQ(mkdir(ws.c_str(), 0755), 0);
  std::vector<std::string> base = {AGENTCAGE_BIN, "trace", "--profile", "default", "--workspace", ws};
  std::vector<std::string> cmd = {"--", "/bin/sh", "-c", "cat /usr/share/doc/bash/README* /etc/hostname >/dev/null 2>&1; unshare -U true; true"};
  auto with = [&](std::vector<std::string> filters) {
    auto argv = base;
    argv.insert(argv.end(), filters.begin(), filters.end());
    argv.push_back("--output");
    argv.push_back(dir + "/ev.json");
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    auto r = run(argv);
    EXPECT_EQ(r.status, 0) << r.err;
    return parse_events(read_all(dir + "/ev.json"));
  };
  auto all = with({});
  auto execs = with({"--kind", "exec"});
  ASSERT_FALSE(execs.empty());
  for (const auto& ev : execs) EXPECT_TRUE(ev.has_exec() || ev.has_loss()) << core::to_json_line(ev);
  EXPECT_LT(execs.size(), all.size());
  auto viol = with({"--violations"});
  ASSERT_FALSE(viol.empty());
  for (const auto& ev : viol) EXPECT_TRUE(ev.has_violation() || ev.has_loss()) << core::to_json_line(ev);
  bool lib = false;
  for (const auto& ev : all) lib |= ev.has_file() && ev.file().path().starts_with("/usr/lib/");
  EXPECT_TRUE(lib) << "the control: library opens are recorded";
  auto ex = with({"--exclude", "/usr/lib/*", "--exclude", "/etc/*"});
  size_t violations = 0;
  for (const auto& ev : ex) {
    violations += ev.has_violation();
    if (ev.has_file() && !ev.has_violation()) {
      EXPECT_FALSE(ev.file().path().starts_with("/usr/lib/")) << core::to_json_line(ev);
      EXPECT_FALSE(ev.file().path().starts_with("/etc/")) << core::to_json_line(ev);
    }
  }
  EXPECT_EQ(violations, viol.size()) << "--exclude hides no violation";
}

// Processes outside the sandbox cgroup produce nothing: the kernel filters by cgroup id.
// The control: the same marker process is seen with --host, so the test proves the filter.
TEST(Trace, OutsideProcessesAreFilteredInTheKernel) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  const std::string marker = "agentcage-outside-marker-" + std::to_string(getpid());
  for (bool host : {false, true}) {
    std::vector<std::string> argv = {AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json"};
    if (host) argv.push_back("--host");
    // The command starts only once the monitor is attached: wait for its "ready" file
    // rather than a fixed delay (loading the programs takes longer on a busy machine).
    const std::string ready = dir + (host ? "/ready-host" : "/ready-sandbox");
    for (auto a : {"--", "sh", "-c"}) argv.push_back(a);
    argv.push_back("touch " + ready + "; sleep 0.8");
    pid_t tracer = testing::start(argv, dir + "/log");
    for (int i = 0; i < 1000 && access(ready.c_str(), F_OK) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto m = run({"/bin/echo", marker});  // a process outside the sandbox
    ASSERT_EQ(m.status, 0);
    ASSERT_EQ(testing::wait_status(tracer), 0) << read_all(dir + "/log");
    auto evs = parse_events(read_all(dir + "/ev.json"));
    bool seen = false;
    for (const auto& e : evs)
      for (const auto& a : e.process().argv()) seen |= a == marker;
    EXPECT_EQ(seen, host) << (host ? "host mode must record the outside process"
                                   : "an outside process leaked into the sandbox's events");
    ASSERT_FALSE(execs_of(evs, "/usr/bin/sleep").empty() && execs_of(evs, "/bin/sleep").empty())
        << "the sandboxed command itself must be recorded";
  }
}

TEST(Run, ExitStatusPropagates) {
  REQUIRE_ROOT();
  EXPECT_EQ(run({AGENTCAGE_BIN, "run", "--", "sh", "-c", "exit 3"}).status, 3);
  EXPECT_EQ(run({AGENTCAGE_BIN, "run", "--", "true"}).status, 0);
  EXPECT_EQ(run({AGENTCAGE_BIN, "run", "--", "sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM);
  EXPECT_EQ(run({AGENTCAGE_BIN, "run", "--", "sh", "-c", "kill -KILL $$"}).status, 128 + SIGKILL);
  EXPECT_EQ(run({AGENTCAGE_BIN, "trace", "--output", "/dev/null", "--", "sh", "-c", "exit 7"}).status, 7);
}

TEST(Run, MissingCommandIsAClearError) {
  REQUIRE_ROOT();
  auto r = run({AGENTCAGE_BIN, "run", "--", "/nonexistent/agent"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("execve(/nonexistent/agent)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST(Run, ForwardsSignals) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    pid_t p = testing::start({AGENTCAGE_BIN, "run", "--", "sleep", "100"}, dir + "/log");
    // Wait until the child runs inside its cgroup before signalling.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(kill(p, sig), 0);
    EXPECT_EQ(testing::wait_status(p), 128 + sig) << "signal " << sig << ": " << read_all(dir + "/log");
  }
}

// A double-forked daemon escapes the process tree but not the cgroup: it dies with the run.
TEST(Run, DaemonisedChildDoesNotOutliveTheRun) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  auto pidfile = dir + "/pid";
  auto r = run({AGENTCAGE_BIN, "run", "--", "sh", "-c",
                "(setsid sh -c 'sleep 1000 & echo $! > " + pidfile + "' &) ; sleep 0.3; exit 0"});
  ASSERT_EQ(r.status, 0) << r.err;
  pid_t pid = std::stoi(read_all(pidfile));
  bool alive = true;
  for (int i = 0; i < 200 && alive; ++i) {
    alive = testing::pid_alive(pid);
    if (alive) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(alive) << "background child " << pid << " survived the run";
  if (alive) kill(pid, SIGKILL);
}

TEST(Run, CgroupIsRemoved) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  auto r = run({AGENTCAGE_BIN, "run", "--", "sh", "-c", "cat /proc/self/cgroup > " + dir + "/cg"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string cg;
  for (const auto& l : testing::lines(read_all(dir + "/cg")))
    if (l.rfind("0::", 0) == 0) cg = l.substr(3);
  ASSERT_NE(cg.find("/agentcage/"), std::string::npos) << "not run in an agentcage cgroup: " << cg;
  // Find the cgroup2 mount the same way the product does, via mountinfo.
  std::string root;
  for (const auto& l : testing::lines(read_all("/proc/self/mountinfo")))
    if (l.find(" - cgroup2 ") != std::string::npos) {
      std::istringstream in(l);
      std::string f;
      for (int i = 0; i < 5; ++i) in >> f;
      root = f;
      break;
    }
  ASSERT_FALSE(root.empty());
  struct stat st;
  EXPECT_NE(stat((root + cg).c_str(), &st), 0) << root + cg << " still exists";
}

}  // namespace
}  // namespace agentcage
