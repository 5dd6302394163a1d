// SPDX-License-Identifier: Apache-2.0
// One event pipeline: the same traced command, run in-process (`run --no-daemon`) and
// through a running agentcaged, is recorded with the same fields. Real processes, real
// kernel records, each store read back with `agentcage events` from a daemon serving it.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "agentcage/v1/event.pb.h"
#include "core/events/decoder.h"
#include "core/events/event_json.h"
#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

// Every populated field of m, by path ("process.parent_exec_id", "exec.filename").
void field_paths(const google::protobuf::Message& m, const std::string& prefix, std::set<std::string>& out) {
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  for (const auto* f : fields) {
    std::string path = prefix + std::string(f->name());
    out.insert(path);
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated())
      field_paths(m.GetReflection()->GetMessage(m, f), path + ".", out);
  }
}

std::string kind_of(const v1::Event& ev) {
  const auto* f = ev.GetDescriptor()->FindFieldByNumber(ev.kind_case());
  return f ? std::string(f->name()) : "none";
}

// Per event kind: the fields some event of that kind has, and those every one has.
struct FieldSets {
  std::map<std::string, std::set<std::string>> some, every;
};

FieldSets field_sets(const std::vector<v1::Event>& evs) {
  FieldSets out;
  for (const auto& ev : evs) {
    std::set<std::string> f;
    field_paths(ev, "", f);
    std::string k = kind_of(ev);
    out.some[k].insert(f.begin(), f.end());
    if (!out.every.count(k)) {
      out.every[k] = f;
      continue;
    }
    std::set<std::string> both;
    for (const auto& x : out.every[k])
      if (f.count(x)) both.insert(x);
    out.every[k] = both;
  }
  return out;
}

std::string show(const std::map<std::string, std::set<std::string>>& m) {
  std::string s;
  for (const auto& [k, fs] : m) {
    s += k + ":";
    for (const auto& f : fs) s += " " + f;
    s += "\n";
  }
  return s;
}

// The events of the one sandbox whose command line holds `marker`, from the daemon on
// `sock`, once the exit of that sandbox's first process is stored (the store writer may
// lag the run by a moment).
std::vector<v1::Event> sandbox_events(const std::string& sock, const std::string& marker, std::string* raw) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto q = run({AGENTCAGE_BIN, "events", "--socket", sock});
    EXPECT_EQ(q.status, 0) << q.err;
    *raw = q.out;
    std::vector<v1::Event> all;
    for (const auto& line : testing::lines(q.out)) {
      v1::Event ev;
      auto st = core::message_from_json(line, &ev);
      EXPECT_TRUE(st) << (st ? "" : st.error().message()) << ": " << line;
      all.push_back(std::move(ev));
    }
    std::string id;
    uint32_t root = 0;
    for (const auto& ev : all)
      if (ev.has_exec() && ev.process().argv_size() > 2 && ev.process().argv(2).find(marker) != std::string::npos) {
        if (id.empty()) {
          id = ev.sandbox_id();
          root = ev.process().pid();
        }
        EXPECT_EQ(ev.sandbox_id(), id) << "one run, one sandbox";
      }
    std::vector<v1::Event> mine;
    bool done = false;
    for (const auto& ev : all)
      // The daemon's own records of the sandbox (created/closed) describe its client, not
      // what ran inside: they are checked by the restart tests, not compared here.
      if (!id.empty() && ev.sandbox_id() == id && !ev.has_sandbox()) {
        mine.push_back(ev);
        done |= ev.has_exit() && ev.process().pid() == root;
      }
    if (done) return mine;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "no complete run with " << marker << " in:\n" << *raw;
  return {};
}

// Runs `cmd` in-process (`run --no-daemon`) into a store of its own under `dir`, then
// reads the events of its sandbox back from a second agentcaged serving that store.
std::vector<v1::Event> run_in_process(const std::vector<std::string>& cmd, const std::string& dir,
                                      const std::string& marker, std::string* raw) {
  std::string db = dir + "/inproc.db", sock = dir + "/inproc.sock";
  std::vector<std::string> a{AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", db};
  a.insert(a.end(), cmd.begin(), cmd.end());
  auto in = run(a);
  EXPECT_EQ(in.status, 0) << in.err;
  EXPECT_EQ(in.out, marker + "\n");
  std::vector<std::string> argv2{AGENTCAGED_BIN, "--socket", sock, "--audit-db", db};
  for (auto& s : testing::daemon_state_args(dir)) argv2.push_back(s);
  pid_t d2 = testing::start(argv2, dir + "/daemon2.log");
  for (int i = 0; i < 500 && access(sock.c_str(), F_OK) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto evs = sandbox_events(sock, marker, raw);
  kill(d2, SIGTERM);
  EXPECT_EQ(testing::wait_status(d2), 0);
  testing::remove_daemon_pins(dir);
  return evs;
}

// The sandbox's first process is recorded from the exec of the command on, never with
// the setup agentcage did in it before (building the view, Landlock, seccomp).
void expect_no_setup(const std::vector<v1::Event>& evs, const std::string& image, const std::string& raw) {
  uint32_t root = 0;
  for (const auto& ev : evs)
    if (!root && ev.has_exec() && ev.exec().filename() == image) root = ev.process().pid();
  ASSERT_NE(root, 0u) << raw;
  for (const auto& ev : evs)
    if (ev.process().pid() == root && !ev.has_fork()) {
      EXPECT_TRUE(ev.has_exec()) << "the first recorded event of the sandbox's first process is its command's "
                                    "exec, not: " << core::to_json_line(ev);
      break;
    }
}

// Exec, fork, file open, a forked subshell that writes without exec'ing, exits.
std::vector<std::string> traced_command(const std::string& marker, const std::string& dir) {
  return {"/bin/sh", "-c",
          "/bin/echo " + marker + "; /bin/true; /bin/cat /etc/hostname >/dev/null; (: > \"$1/sub\"); : > \"$1/top\"",
          "sh", dir};
}

// What both paths must give every event of a sandbox (ISSUE 9 item 6), and how a fork
// and the exec after it link up.
void expect_enriched(const std::vector<v1::Event>& evs, const std::string& path, int min_linked = 3) {
  ASSERT_FALSE(evs.empty()) << path;
  std::map<std::string, const v1::Event*> exec_of;  // exec_id -> its exec
  for (const auto& ev : evs) {
    const auto& p = ev.process();
    std::string j = path + ": " + core::to_json_line(ev);
    EXPECT_FALSE(p.exec_id().empty()) << j;
    EXPECT_FALSE(p.parent_exec_id().empty()) << j;
    EXPECT_FALSE(p.comm().empty()) << j;
    EXPECT_FALSE(p.binary().empty()) << j;
    EXPECT_GT(p.argv_size(), 0) << j;
    EXPECT_FALSE(p.cwd().empty()) << j;
    if (ev.has_exec()) exec_of[p.exec_id()] = &ev;
  }
  int linked = 0;
  for (const auto& ev : evs) {
    if (!ev.has_fork()) continue;
    auto it = exec_of.find(ev.fork().child_exec_id());
    if (it == exec_of.end()) continue;  // the subshell: forked, never exec'd
    // The child's exec names the process that forked it, by the exec_id its fork carried.
    EXPECT_EQ(it->second->process().parent_exec_id(), ev.process().exec_id()) << path << ": " << core::to_json_line(ev);
    ++linked;
  }
  EXPECT_GE(linked, min_linked) << path << ": the shell's children are forked, then exec'd";
}

TEST(EventPaths, SameCommandYieldsTheSameEventFieldsInProcessAndThroughTheDaemon) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and creates cgroups";
  std::string marker = "pipeline-mark-" + std::to_string(getpid());

  // (2) Through a running agentcaged (root with no profile goes through it when it listens).
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  auto via = run([&] {
    std::vector<std::string> a{AGENTCAGE_BIN, "run", "--socket", d.socket(), "--"};
    for (auto& s : traced_command(marker, d.dir())) a.push_back(s);
    return a;
  }());
  ASSERT_EQ(via.status, 0) << via.err << d.log();
  EXPECT_EQ(via.out, marker + "\n");
  std::string raw_daemon;
  auto daemon_events = sandbox_events(d.socket(), marker, &raw_daemon);

  // (1) In-process, into a store of its own.
  std::string dir = testing::temp_dir(), raw_inproc;
  std::vector<std::string> cmd{"--"};
  for (auto& a : traced_command(marker, dir)) cmd.push_back(a);
  auto inproc_events = run_in_process(cmd, dir, marker, &raw_inproc);

  expect_enriched(daemon_events, "daemon");
  expect_enriched(inproc_events, "in-process");
  auto a = field_sets(daemon_events), b = field_sets(inproc_events);
  EXPECT_EQ(show(a.some), show(b.some)) << "fields some event of a kind has, daemon vs in-process";
  EXPECT_EQ(show(a.every), show(b.every)) << "fields every event of a kind has, daemon vs in-process";
  // Nothing of the launcher's own setup, and everything the command did.
  for (const auto* evs : {&daemon_events, &inproc_events}) {
    std::set<std::string> files;
    for (const auto& ev : *evs)
      if (ev.has_file()) files.insert(ev.file().path());
    bool sub = false, top = false;
    for (const auto& f : files) {
      sub |= f.ends_with("/sub");
      top |= f.ends_with("/top");
    }
    EXPECT_TRUE(sub && top) << (evs == &daemon_events ? raw_daemon : raw_inproc);
  }
}

// Through agentcaged an unprivileged client confines its own held child (Landlock opens
// every rule path, seccomp and the rest are installed) after PlaceProcess moved it into
// the sandbox: that setup is the client's, and is not recorded as the command's.
TEST(EventPaths, ProfiledRunThroughTheDaemonRecordsNothingOfTheClientsSetup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: starts agentcaged and runs a client as nobody";
  passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  testing::DaemonProcess d;
  ASSERT_EQ(d.start(), "");
  std::string ws = d.dir() + "/ws", marker = "setup-mark-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(ws.c_str(), 0755), 0);
  ASSERT_EQ(chown(ws.c_str(), pw->pw_uid, pw->pw_gid), 0);
  // setpriv keeps root's environment: the profile's ${HOME} must be nobody's.
  auto r = run(testing::as_nobody({"/usr/bin/env", std::string("HOME=") + pw->pw_dir, AGENTCAGE_BIN, "run", "--socket", d.socket(), "--profile", "default", "--workspace",
                                   ws, "--", "/bin/sh", "-c", "/bin/echo " + marker + " > " + ws + "/out", "sh"}));
  ASSERT_EQ(r.status, 0) << r.out << r.err << d.log();
  std::string raw;
  auto evs = sandbox_events(d.socket(), marker, &raw);
  ASSERT_FALSE(evs.empty());
  expect_no_setup(evs, "/bin/sh", raw);
  bool out = false;
  for (const auto& ev : evs) out |= ev.has_file() && ev.file().path() == ws + "/out";
  EXPECT_TRUE(out) << "the command's own open is recorded\n" << raw;
  expect_enriched(evs, "daemon, profile", 1);
}

// As root in-process the launcher's child builds the profile's private view (mkdir,
// mount, symlink in a scratch root) before its exec: agentcage's work, not recorded.
TEST(EventPaths, ProfiledRunInProcessRecordsNothingOfTheLaunchersSetup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the private view and the BPF monitor";
  std::string dir = testing::temp_dir(), ws = dir + "/ws", marker = "view-mark-" + std::to_string(getpid()), raw;
  ASSERT_EQ(mkdir(ws.c_str(), 0755), 0);
  auto evs = run_in_process({"--profile", "default", "--workspace", ws, "--", "/bin/sh", "-c",
                             "/bin/echo " + marker + "; /bin/echo x > " + ws + "/out"},
                            dir, marker, &raw);
  expect_no_setup(evs, "/bin/sh", raw);
  bool out = false;
  for (const auto& ev : evs) out |= ev.has_file() && ev.file().path().ends_with("/out");
  EXPECT_TRUE(out) << "the command's own open is recorded\n" << raw;
  expect_enriched(evs, "in-process, profile", 1);
}

}  // namespace
}  // namespace agentcage
