// SPDX-License-Identifier: Apache-2.0
// The one event pipeline, fed kernel records built from the shared ABI header and a
// synthetic /proc: enrichment on both launch paths (a child born into the sandbox, a
// held child placed into it), the launcher's setup dropped and nothing else, the
// attributed violation after its event, Loss events for what did not arrive.
#include "core/events/event_pipeline.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <agentcage/abi.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <vector>

#include "core/events/event_json.h"

namespace agentcage::core {
namespace {

const std::string kBoot = "0123456789abcdef";
const uint64_t kTick = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
constexpr uint64_t kSandbox = 0xabc;
const std::string kSandboxId = "0000000000000abc";
constexpr uint32_t kLauncher = 500;

// A /proc/<pid> directory with the files the process table reads.
void fake_proc(const std::string& root, uint32_t pid, uint32_t ppid, uint64_t start_ticks, const std::string& comm,
               const std::string& exe) {
  std::string d = root + "/" + std::to_string(pid);
  mkdir(d.c_str(), 0755);
  std::ofstream(d + "/stat") << pid << " (" << comm << ") S " << ppid
                             << " 1 1 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 " << start_ticks
                             << " 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
  std::ofstream(d + "/status") << "Name:\t" << comm << "\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
  std::ofstream(d + "/cmdline", std::ios::binary) << exe << '\0';
  symlink(exe.c_str(), (d + "/exe").c_str());
  symlink("/", (d + "/cwd").c_str());
}

// A fresh synthetic /proc holding init.
std::string temp_dir() {
  char tmpl[] = "/tmp/agentcage-pipetest-XXXXXX";
  const char* d = mkdtemp(tmpl);
  std::string root = d ? d : "/tmp";
  fake_proc(root, 1, 0, 5, "init", "/sbin/init");
  return root;
}

// Records in ring-buffer form, as the BPF programs write them.
class Records {
 public:
  template <class T>
  void add(const T& rec) {
    auto* b = reinterpret_cast<const std::byte*>(&rec);
    recs_.emplace_back(b, b + sizeof rec);
  }
  const std::vector<std::vector<std::byte>>& all() const { return recs_; }

 private:
  std::vector<std::vector<std::byte>> recs_;
};

uint64_t g_ktime = 10'000'000'000;  // records are made after every fake /proc start time

template <class T>
void header(T& r, uint16_t type, uint32_t pid, uint32_t ppid, uint64_t start_ns) {
  r.hdr.type = type;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.ktime_ns = g_ktime += 1000;
  r.hdr.sandbox_id = kSandbox;
  r.hdr.pid = r.hdr.tid = pid;
  r.hdr.ppid = ppid;
  r.hdr.start_ns = start_ns;
}

ac_fork_event fork_rec(uint32_t parent, uint32_t child, uint64_t child_start, const char* comm) {
  ac_fork_event r{};
  header(r, AC_EV_FORK, child, parent, child_start);
  r.child_start_ns = child_start;
  std::strcpy(r.comm, comm);
  return r;
}

ac_exec_event exec_rec(uint32_t pid, uint32_t ppid, uint64_t start, const char* image) {
  ac_exec_event r{};
  header(r, AC_EV_EXEC, pid, ppid, start);
  std::strcpy(r.filename, image);
  r.filename_len = static_cast<uint32_t>(strlen(image) + 1);
  std::strcpy(r.exe, image);
  r.exe_len = r.filename_len;
  std::strcpy(r.cwd, "/work");
  r.cwd_len = 6;
  std::strcpy(r.argv, image);
  r.argv_len = r.filename_len;
  r.argc = 1;
  const char* base = strrchr(image, '/');
  std::strcpy(r.comm, base ? base + 1 : image);
  return r;
}

ac_file_event open_rec(uint32_t pid, uint32_t ppid, uint64_t start, const char* path, int result = 3) {
  ac_file_event r{};
  header(r, AC_EV_FILE, pid, ppid, start);
  r.hdr.flags = AC_F_PATH_RESOLVED;
  r.op = AC_FOP_OPEN;
  r.nr = 257;  // openat
  r.result = result;
  r.dirfd = -100;
  std::strcpy(r.path, path);
  r.path_len = static_cast<uint32_t>(strlen(path) + 1);
  return r;
}

ac_exit_event exit_rec(uint32_t pid, uint32_t ppid, uint64_t start, const char* comm) {
  ac_exit_event r{};
  header(r, AC_EV_EXIT, pid, ppid, start);
  std::strcpy(r.comm, comm);
  return r;
}

// The command the privileged test traces, as records: `sh -c '/bin/echo a; cat f'` from
// the sandbox's first process (pid 600), after `setup` records of the launcher's child.
void command(Records& r, uint64_t sh_start, bool born_by_fork) {
  if (born_by_fork) r.add(fork_rec(kLauncher, 600, sh_start, "agentcage"));
  r.add(open_rec(600, kLauncher, sh_start, "/setup/landlock-rule-path"));  // agentcage's, not the command's
  r.add(exec_rec(600, kLauncher, sh_start, "/bin/sh"));
  r.add(fork_rec(600, 601, sh_start + 1000, "sh"));
  r.add(open_rec(601, 600, sh_start + 1000, "/work/out"));  // the command's own, before its exec
  r.add(exec_rec(601, 600, sh_start + 1000, "/bin/echo"));
  r.add(exit_rec(601, 600, sh_start + 1000, "echo"));
  r.add(open_rec(600, kLauncher, sh_start, "/work/f"));
  r.add(exit_rec(600, kLauncher, sh_start, "sh"));
}

struct Run {
  std::vector<v1::Event> events;
  uint64_t setup_dropped = 0;
};

// Through a pipeline whose /proc is `proc` (seeded before `later` adds its processes).
Run run(const Records& r, const std::string& proc, const std::function<void()>& later = {},
        PipelineOptions o = {}) {
  o.ctx = DecodeContext{"node1", kBoot, 0};
  o.proc_root = proc;
  if (!o.launcher)
    o.launcher = [](const std::string& id) { return id == kSandboxId ? LauncherInfo{kLauncher, {}} : LauncherInfo{}; };
  Run out;
  EventPipeline p(std::move(o), [&](const v1::Event& ev) { out.events.push_back(ev); });
  EXPECT_TRUE(p.seed());
  if (later) later();
  for (const auto& rec : r.all()) p.handle(rec);
  out.setup_dropped = p.setup_dropped();
  return out;
}

// "exec: binary,comm,exec_id,...": the populated fields of each event, as JSON shows them.
std::set<std::string> field_sets(const std::vector<v1::Event>& evs) {
  std::set<std::string> out;
  for (const auto& ev : evs) {
    std::string line = to_json_line(ev);
    v1::Event back;
    EXPECT_TRUE(message_from_json(line, &back));
    std::vector<const google::protobuf::FieldDescriptor*> fields;
    back.process().GetReflection()->ListFields(back.process(), &fields);
    std::string s = std::string(back.GetDescriptor()->FindFieldByNumber(back.kind_case())->name()) + ":";
    for (const auto* f : fields) s += f->name() + ",";
    out.insert(s);
  }
  return out;
}

void expect_enriched(const std::vector<v1::Event>& evs, const std::string& launcher_exec_id) {
  for (const auto& ev : evs) {
    const auto& p = ev.process();
    EXPECT_FALSE(p.exec_id().empty()) << to_json_line(ev);
    EXPECT_FALSE(p.comm().empty()) << to_json_line(ev);
    EXPECT_FALSE(p.binary().empty()) << to_json_line(ev);
    EXPECT_FALSE(p.parent_exec_id().empty()) << to_json_line(ev);
    if (ev.has_file()) {
      EXPECT_NE(ev.file().path(), "/setup/landlock-rule-path") << "the launcher's setup leaked";
    }
  }
  auto exec_of = [&](const std::string& image) {
    for (const auto& ev : evs)
      if (ev.has_exec() && ev.exec().filename() == image) return ev;
    ADD_FAILURE() << "no exec of " << image;
    return v1::Event{};
  };
  v1::Event sh = exec_of("/bin/sh"), echo = exec_of("/bin/echo");
  EXPECT_EQ(sh.process().parent_exec_id(), launcher_exec_id);
  EXPECT_EQ(echo.process().parent_exec_id(), sh.process().exec_id());
  for (const auto& ev : evs)
    if (ev.has_fork() && ev.process().pid() == 600) {
      EXPECT_EQ(ev.process().exec_id(), sh.process().exec_id()) << "the fork carries its parent's exec_id";
      EXPECT_EQ(ev.process().binary(), "/bin/sh");
    }
}

TEST(EventPipeline, ChildBornIntoTheSandboxIsEnrichedAndItsSetupDropped) {
  // In-process: the launcher runs before the table is seeded and forks its child into
  // the sandbox cgroup (clone3), so the kernel records the fork.
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records r;
  command(r, 900 * kTick, /*born_by_fork=*/true);
  auto out = run(r, proc);
  EXPECT_EQ(out.setup_dropped, 1u);
  ASSERT_EQ(out.events.size(), 8u);  // every record but the setup open
  expect_enriched(out.events, make_exec_id(kBoot, kLauncher, 100 * kTick));
}

// A pid namespace: the launcher forks agentcage's init into the sandbox, the init forks
// the process that builds the view and execs the command. Both are agentcage's own: only
// the launcher's fork is recorded, and the command's exec names the launcher as parent.
TEST(EventPipeline, TheSandboxInitAndItsChildsSetupAreDroppedAndTheLauncherIsTheParent) {
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  const uint64_t init_start = 900 * kTick, sh_start = init_start + 1000;
  Records r;
  r.add(fork_rec(kLauncher, 600, init_start, "agentcage"));
  r.add(fork_rec(600, 601, sh_start, "agentcage"));
  r.add(open_rec(601, 600, sh_start, "/run/agentcage/x/root/etc"));  // the view, built by the init's child
  r.add(exec_rec(601, 600, sh_start, "/bin/sh"));
  r.add(open_rec(601, 600, sh_start, "/work/f"));
  r.add(exit_rec(601, 600, sh_start, "sh"));
  r.add(exit_rec(600, kLauncher, init_start, "agentcage"));
  auto out = run(r, proc);
  EXPECT_EQ(out.setup_dropped, 3u);  // the init's fork, the view's open, the init's exit
  ASSERT_EQ(out.events.size(), 4u);
  EXPECT_TRUE(out.events[0].has_fork());
  ASSERT_TRUE(out.events[1].has_exec());
  EXPECT_EQ(out.events[1].process().parent_exec_id(), make_exec_id(kBoot, kLauncher, 100 * kTick));
  EXPECT_EQ(out.events[2].file().path(), "/work/f");
}

TEST(EventPipeline, HeldChildPlacedIntoTheSandboxIsEnrichedAndItsSetupDropped) {
  // agentcaged: its client starts after the daemon seeded its table, is not tracked, and
  // forks its child outside the sandbox before PlaceProcess moves it in: no fork record;
  // the client is found in /proc when its child appears.
  auto proc = temp_dir();
  Records r;
  command(r, 900 * kTick, /*born_by_fork=*/false);
  auto out = run(r, proc, [&] { fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage"); });
  EXPECT_EQ(out.setup_dropped, 1u);
  ASSERT_EQ(out.events.size(), 7u);
  expect_enriched(out.events, make_exec_id(kBoot, kLauncher, 100 * kTick));
}

TEST(EventPipeline, BothLaunchPathsYieldTheSameFieldsPerKind) {
  auto proc_a = temp_dir(), proc_b = temp_dir();
  fake_proc(proc_a, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records born, placed;
  command(born, 900 * kTick, true);
  command(placed, 900 * kTick, false);
  auto a = run(born, proc_a);
  auto b = run(placed, proc_b, [&] { fake_proc(proc_b, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage"); });
  EXPECT_EQ(field_sets(a.events), field_sets(b.events));
}

TEST(EventPipeline, AParentThatIsGoneOrAReusedPidIsNotNamed) {
  // The client's pid now belongs to a process that started after the record: not the parent.
  auto proc = temp_dir();
  Records r;
  r.add(exec_rec(600, kLauncher, 900 * kTick, "/bin/sh"));
  auto out = run(r, proc, [&] { fake_proc(proc, kLauncher, 1, g_ktime / kTick + 1000, "other", "/bin/other"); });
  ASSERT_EQ(out.events.size(), 1u);
  EXPECT_EQ(out.events[0].process().parent_exec_id(), "");
}

TEST(EventPipeline, AClientGoneBeforeItsChildsRecordsAreReadIsNamedFromWhatTheDaemonKept) {
  // Records are read in batches: a short run's client may have exited (and been reaped)
  // before its child's first record is handled. agentcaged knows its start time.
  auto proc = temp_dir();  // no client in it
  const std::string client = make_exec_id(kBoot, kLauncher, 100 * kTick);
  for (bool with_setup : {false, true}) {
    Records r;
    if (with_setup) r.add(open_rec(600, kLauncher, 900 * kTick, "/setup/x"));
    r.add(exec_rec(600, kLauncher, 900 * kTick, "/bin/sh"));
    r.add(open_rec(600, kLauncher, 900 * kTick, "/work/f"));
    PipelineOptions o;
    o.launcher = [&](const std::string&) { return LauncherInfo{kLauncher, client}; };
    auto out = run(r, proc, {}, std::move(o));
    ASSERT_EQ(out.events.size(), 2u);
    EXPECT_EQ(out.setup_dropped, with_setup ? 1u : 0u);
    for (const auto& ev : out.events) EXPECT_EQ(ev.process().parent_exec_id(), client) << to_json_line(ev);
  }
}

TEST(EventPipeline, OnlyTheLaunchersFirstChildBeforeItsExecIsSetup) {
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records r;
  command(r, 900 * kTick, true);
  // A second child of the launcher appearing in the same sandbox is not hidden: setup
  // filtering must never become a way to run unrecorded.
  r.add(open_rec(700, kLauncher, 950 * kTick, "/work/second"));
  // Another sandbox's process whose parent is the same pid: not this launcher's.
  auto other = open_rec(800, kLauncher, 960 * kTick, "/work/other-sandbox");
  other.hdr.sandbox_id = 0xdef;
  r.add(other);
  auto out = run(r, proc);
  EXPECT_EQ(out.setup_dropped, 1u);
  std::set<std::string> paths;
  for (const auto& ev : out.events)
    if (ev.has_file()) paths.insert(ev.file().path());
  EXPECT_EQ(paths, (std::set<std::string>{"/work/out", "/work/f", "/work/second", "/work/other-sandbox"}));
}

TEST(EventPipeline, WithoutALauncherLookupNothingIsDropped) {
  auto proc = temp_dir();
  Records r;
  command(r, 900 * kTick, false);
  PipelineOptions o;
  o.launcher = [](const std::string&) { return LauncherInfo{}; };
  auto out = run(r, proc, {}, std::move(o));
  EXPECT_EQ(out.setup_dropped, 0u);
  EXPECT_EQ(out.events.size(), 8u);
}

TEST(EventPipeline, AFailedLaunchIsDroppedWholeAndForgotten) {
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records r;
  r.add(fork_rec(kLauncher, 600, 900 * kTick, "agentcage"));
  r.add(open_rec(600, kLauncher, 900 * kTick, "/setup/x"));
  r.add(exit_rec(600, kLauncher, 900 * kTick, "agentcage"));
  std::vector<v1::Event> evs;
  PipelineOptions o;
  o.ctx = DecodeContext{"node1", kBoot, 0};
  o.proc_root = proc;
  o.launcher = [](const std::string&) { return LauncherInfo{kLauncher, {}}; };
  EventPipeline p(std::move(o), [&](const v1::Event& ev) { evs.push_back(ev); });
  ASSERT_TRUE(p.seed());
  for (const auto& rec : r.all()) p.handle(rec);
  EXPECT_EQ(p.setup_dropped(), 2u);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].has_fork());
  EXPECT_EQ(p.processes().find(600), nullptr) << "the failed launch's exit removed it from the table";
}

TEST(EventPipeline, AttributedViolationFollowsItsEventWithTheSameProcess) {
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records r;
  r.add(exec_rec(600, kLauncher, 900 * kTick, "/bin/sh"));
  auto ro = open_rec(600, kLauncher, 900 * kTick, "/usr/x", -EROFS);
  ro.hdr.flags = 0;
  r.add(ro);
  auto d = std::make_shared<ConfineDecisions>();
  d->masks_enforced = true;
  d->masks.private_view = true;
  PipelineOptions o;
  o.attribution = [d](const std::string& id) {
    return id == kSandboxId ? SandboxAttribution{d, false} : SandboxAttribution{};
  };
  auto out = run(r, proc, {}, std::move(o));
  ASSERT_EQ(out.events.size(), 3u);
  EXPECT_TRUE(out.events[1].has_file());
  ASSERT_TRUE(out.events[2].has_violation());
  EXPECT_EQ(out.events[2].violation().mechanism(), "mount-mask");
  EXPECT_EQ(out.events[2].process().binary(), "/bin/sh") << "the violation names the enriched process";
  EXPECT_EQ(out.events[2].process().comm(), "sh");
}

// Issue 11 item 7: a folded failure's record says how many identical ones it stands for,
// and so does its violation; the kernel's count swept after the window comes back as that
// failure again, violation included, with the count of what it stood for; a count whose
// record this pipeline never saw, and records the ring's reserve refused, are Loss events.
TEST(EventPipeline, FoldedFailuresComeBackWithTheirCountsAndSheddingIsALoss) {
  auto proc = temp_dir();
  fake_proc(proc, kLauncher, 1, 100, "agentcage", "/usr/bin/agentcage");
  Records r;
  r.add(exec_rec(600, kLauncher, 900 * kTick, "/bin/sh"));
  auto ro = open_rec(600, kLauncher, 900 * kTick, "/usr/x", -EROFS);
  ro.hdr.flags = AC_F_FOLDED;
  ro.repeats = 41;
  ro.fold_hash = 0x1234;
  r.add(ro);
  auto d = std::make_shared<ConfineDecisions>();
  d->masks_enforced = true;
  d->masks.private_view = true;
  std::vector<v1::Event> evs;
  PipelineOptions o;
  o.ctx = DecodeContext{"node1", kBoot, 0};
  o.proc_root = proc;
  o.launcher = [](const std::string& id) { return id == kSandboxId ? LauncherInfo{kLauncher, {}} : LauncherInfo{}; };
  o.attribution = [d](const std::string& id) {
    return id == kSandboxId ? SandboxAttribution{d, false} : SandboxAttribution{};
  };
  o.loss_sandbox_id = "";
  EventPipeline p(std::move(o), [&](const v1::Event& ev) { evs.push_back(ev); });
  ASSERT_TRUE(p.seed());
  for (const auto& rec : r.all()) p.handle(rec);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[1].file().repeats(), 41u);
  ASSERT_TRUE(evs[2].has_violation());
  EXPECT_EQ(evs[2].violation().file().repeats(), 41u);
  EXPECT_NE(evs[2].violation().what().find("/usr/x, and 41 more identical attempts"), std::string::npos)
      << evs[2].violation().what();

  ac_fold_key key{};
  key.tid = 600;
  key.result = -EROFS;
  key.nr = 257;
  key.hash = 0x1234;
  ac_fold_value v{ro.hdr.ktime_ns, ro.hdr.ktime_ns + 5'000'000, 7};
  p.folded(key, v);
  ASSERT_EQ(evs.size(), 5u);
  EXPECT_EQ(evs[3].file().path(), "/usr/x");
  EXPECT_EQ(evs[3].file().repeats(), 6u) << "the last of the 7, standing for 6 more";
  EXPECT_EQ(evs[3].ktime_ns(), v.last_ns);
  EXPECT_EQ(evs[3].process().binary(), "/bin/sh");
  ASSERT_TRUE(evs[4].has_violation());
  EXPECT_EQ(evs[4].violation().file().repeats(), 6u);
  // Swept once: the record is forgotten with it, so a second count is unmatched.
  p.folded(key, v);
  ASSERT_EQ(evs.size(), 6u);
  ASSERT_TRUE(evs[5].has_loss());
  EXPECT_EQ(evs[5].loss().reason(), "folded_unmatched");
  EXPECT_EQ(evs[5].loss().count(), 7u);
  // A record without AC_F_FOLDED is never matched.
  key.hash = 0x999;
  p.folded(key, v);
  EXPECT_EQ(evs.back().loss().reason(), "folded_unmatched");

  p.shed(kSandbox, 12);
  ASSERT_TRUE(evs.back().has_loss());
  EXPECT_EQ(evs.back().loss().reason(), "ringbuf_shed");
  EXPECT_EQ(evs.back().loss().count(), 12u);
  EXPECT_EQ(evs.back().sandbox_id(), kSandboxId) << "charged to the sandbox that shed it";
  EXPECT_EQ(p.shed_lost(), 12u);
}

TEST(EventPipeline, UndecodableRecordsAndRingLossesBecomeLossEvents) {
  std::vector<v1::Event> evs;
  PipelineOptions o;
  o.ctx = DecodeContext{"node1", kBoot, 0};
  o.proc_root = "";
  o.loss_sandbox_id = kSandboxId;
  EventPipeline p(std::move(o), [&](const v1::Event& ev) { evs.push_back(ev); });
  std::vector<std::byte> junk(10);
  p.handle(junk);
  EXPECT_EQ(p.ring_full(0), 0u);
  EXPECT_EQ(p.ring_full(5), 5u);
  EXPECT_EQ(p.ring_full(5), 0u) << "a count is reported once";
  EXPECT_EQ(p.ring_full(7), 2u);
  EXPECT_EQ(p.decode_errors(), 1u);
  EXPECT_EQ(p.ring_lost(), 7u);
  ASSERT_EQ(evs.size(), 3u);
  for (const auto& ev : evs) {
    ASSERT_TRUE(ev.has_loss());
    EXPECT_EQ(ev.node(), "node1");
    EXPECT_EQ(ev.sandbox_id(), kSandboxId);
    EXPECT_EQ(ev.loss().where(), "kernel");
    EXPECT_GT(ev.time_ns(), 0u);
  }
  EXPECT_EQ(evs[0].loss().reason(), "decode_error");
  EXPECT_EQ(evs[0].loss().count(), 1u);
  EXPECT_EQ(evs[1].loss().reason(), "ringbuf_full");
  EXPECT_EQ(evs[1].loss().count(), 5u);
  EXPECT_EQ(evs[2].loss().count(), 2u);
}

}  // namespace
}  // namespace agentcage::core
