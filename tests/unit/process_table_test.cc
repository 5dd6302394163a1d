// SPDX-License-Identifier: Apache-2.0
// The process table: seeding from a synthetic /proc tree, fork/exec/exit bookkeeping,
// enrichment of events, pid reuse.
#include "core/events/process_table.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "core/events/decoder.h"

namespace agentcage::core {
namespace {

const std::string kBoot = "0123456789abcdef";
const uint64_t kTick = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));

std::string temp_dir() {
  char tmpl[] = "/tmp/agentcage-proctest-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A /proc/<pid> directory with the files the table reads.
void fake_proc(const std::string& root, uint32_t pid, uint32_t ppid, uint64_t start_ticks, const std::string& comm,
               const std::string& cmdline, const std::string& exe, const std::string& cwd) {
  std::string d = root + "/" + std::to_string(pid);
  mkdir(d.c_str(), 0755);
  write(d + "/stat", std::to_string(pid) + " (" + comm + ") S " + std::to_string(ppid) +
                         " 1 1 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 " + std::to_string(start_ticks) +
                         " 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n");
  write(d + "/status", "Name:\t" + comm + "\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n");
  write(d + "/cmdline", cmdline);
  if (!exe.empty()) symlink(exe.c_str(), (d + "/exe").c_str());
  symlink(cwd.c_str(), (d + "/cwd").c_str());
}

v1::Event event_of(uint32_t pid, uint32_t ppid, uint64_t start_ns) {
  v1::Event ev;
  auto* p = ev.mutable_process();
  p->set_pid(pid);
  p->set_tid(pid);
  p->set_ppid(ppid);
  p->set_start_time_ns(start_ns);
  p->set_exec_id(make_exec_id(kBoot, pid, start_ns));
  return ev;
}

TEST(ProcessTable, SeedsFromProcWithParentsAndOddComms) {
  auto root = temp_dir();
  fake_proc(root, 1, 0, 5, "init", std::string("/sbin/init\0splash\0", 18), "/usr/lib/systemd/systemd", "/");
  fake_proc(root, 200, 1, 700, "my) (odd", std::string("bash\0", 5), "/usr/bin/bash", "/home/u");
  mkdir((root + "/self").c_str(), 0755);          // not a pid: ignored
  mkdir((root + "/300").c_str(), 0755);           // vanished process (no stat): skipped
  write(root + "/400", "not a directory");        // garbage: skipped

  ProcessTable t(kBoot);
  auto n = t.seed_from_proc(root);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 2u);
  const auto* bash = t.find(200);
  ASSERT_NE(bash, nullptr);
  EXPECT_EQ(bash->comm, "my) (odd");
  EXPECT_EQ(bash->ppid, 1u);
  EXPECT_EQ(bash->uid, 1000u);
  EXPECT_EQ(bash->gid, 100u);
  EXPECT_EQ(bash->binary, "/usr/bin/bash");
  EXPECT_EQ(bash->cwd, "/home/u");
  ASSERT_EQ(bash->argv.size(), 1u);
  EXPECT_EQ(bash->argv[0], "bash");
  // Same id as the kernel computes from the start time in ns.
  EXPECT_EQ(bash->exec_id, make_exec_id(kBoot, 200, 700 * kTick + 12345));
  EXPECT_EQ(bash->parent_exec_id, t.find(1)->exec_id);
  ASSERT_EQ(t.find(1)->argv.size(), 2u);
  EXPECT_EQ(t.find(1)->argv[1], "splash");
}

TEST(ProcessTable, MalformedStatIsAClearError) {
  auto root = temp_dir();
  mkdir((root + "/9").c_str(), 0755);
  write(root + "/9/stat", "9 (x) S");
  ProcessTable t(kBoot);
  auto p = t.read_proc_entry(root + "/9", 9);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find("starttime"), std::string::npos) << p.error().message();
}

TEST(ProcessTable, SeedsFromTheRealProc) {
  ProcessTable t(DecodeContext::for_this_host().boot_id);
  auto n = t.seed_from_proc();
  ASSERT_TRUE(n) << n.error().message();
  const auto* self = t.find(static_cast<uint32_t>(getpid()));
  ASSERT_NE(self, nullptr);
  EXPECT_FALSE(self->argv.empty());
  EXPECT_FALSE(self->binary.empty());
}

TEST(ProcessTable, ForkExecExitStampEvents) {
  ProcessTable t(kBoot);
  ProcessInfo parent;
  parent.pid = 10;
  parent.ppid = 1;
  parent.exec_id = make_exec_id(kBoot, 10, 1'000'000'000);
  parent.parent_exec_id = "init-id";
  parent.binary = "/bin/sh";
  parent.argv = {"sh", "-c", "x"};
  parent.cwd = "/work";
  t.upsert(parent);

  // fork: the record describes the child; the event is about the parent.
  v1::Event fork;
  fork.mutable_process()->set_pid(10);
  fork.mutable_fork()->set_child_pid(11);
  fork.mutable_fork()->set_child_exec_id(make_exec_id(kBoot, 11, 2'000'000'000));
  t.apply(fork);
  EXPECT_EQ(fork.process().exec_id(), parent.exec_id);
  EXPECT_EQ(fork.process().parent_exec_id(), "init-id");
  const auto* child = t.find(11);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->parent_exec_id, parent.exec_id);
  EXPECT_EQ(child->cwd, "/work") << "a child inherits the cwd";

  // A file event of the child before it execs: the parent's image and argv.
  auto open = event_of(11, 10, 2'000'000'000);
  open.mutable_file()->set_op("open");
  t.apply(open);
  EXPECT_EQ(open.process().parent_exec_id(), parent.exec_id);
  EXPECT_EQ(open.process().binary(), "/bin/sh");
  EXPECT_EQ(open.process().cwd(), "/work");

  // exec replaces the image; the exec_id stays (same pid, same start time).
  auto exec = event_of(11, 10, 2'000'000'000);
  exec.mutable_exec()->set_filename("/bin/ls");
  exec.mutable_process()->set_binary("/usr/bin/ls");
  exec.mutable_process()->add_argv("ls");
  exec.mutable_process()->set_cwd("/work/sub");
  t.apply(exec);
  EXPECT_EQ(exec.process().parent_exec_id(), parent.exec_id);
  auto after = event_of(11, 10, 2'000'000'000);
  after.mutable_file()->set_op("open");
  t.apply(after);
  EXPECT_EQ(after.process().binary(), "/usr/bin/ls");
  ASSERT_EQ(after.process().argv_size(), 1);
  EXPECT_EQ(after.process().argv(0), "ls");
  EXPECT_EQ(after.process().cwd(), "/work/sub");

  // A failed exec changes nothing.
  auto failed = event_of(11, 10, 2'000'000'000);
  failed.mutable_exec()->set_result(-2);
  t.apply(failed);
  EXPECT_EQ(t.find(11)->binary, "/usr/bin/ls");

  // exit stamps, then forgets.
  auto exit = event_of(11, 10, 2'000'000'000);
  exit.mutable_exit();
  t.apply(exit);
  EXPECT_EQ(exit.process().binary(), "/usr/bin/ls");
  EXPECT_EQ(t.find(11), nullptr);
}

TEST(ProcessTable, ReusedPidIsANewProcess) {
  ProcessTable t(kBoot);
  ProcessInfo old;
  old.pid = 50;
  old.exec_id = make_exec_id(kBoot, 50, 1'000'000'000);
  old.binary = "/old";
  old.argv = {"old"};
  t.upsert(old);
  auto ev = event_of(50, 1, 9'000'000'000);  // same pid, later start: a different process
  ev.mutable_file()->set_op("open");
  t.apply(ev);
  EXPECT_TRUE(ev.process().binary().empty()) << "must not inherit the dead process's image";
  EXPECT_EQ(ev.process().argv_size(), 0);
  EXPECT_EQ(t.find(50)->exec_id, ev.process().exec_id());
}

// A parent that started after the seed and is not tracked (agentcaged's client) is read
// from proc_root when its child first appears; a pid reused since is not taken for it.
TEST(ProcessTable, UnknownParentIsReadFromProcWhenItsChildAppears) {
  auto root = temp_dir();
  ProcessTable t(kBoot, root);
  ASSERT_TRUE(t.seed_from_proc(root));
  fake_proc(root, 20, 1, 300, "client", std::string("agentcage\0run\0", 14), "/usr/bin/agentcage", "/");
  auto exec = event_of(21, 20, 400 * kTick);
  exec.set_ktime_ns(500 * kTick);
  exec.mutable_exec()->set_filename("/bin/sh");
  t.apply(exec);
  EXPECT_EQ(exec.process().parent_exec_id(), make_exec_id(kBoot, 20, 300 * kTick));
  EXPECT_EQ(t.find(20), nullptr) << "only named: the untracked client would never leave the table";

  // Pid 30 now belongs to a process that started after the record was made.
  fake_proc(root, 30, 1, 900, "other", std::string("other\0", 6), "/bin/other", "/");
  auto late = event_of(31, 30, 400 * kTick);
  late.set_ktime_ns(500 * kTick);
  late.mutable_exec()->set_filename("/bin/sh");
  t.apply(late);
  EXPECT_EQ(late.process().parent_exec_id(), "");

  // Without a proc_root the table stays pure.
  ProcessTable pure(kBoot);
  auto again = event_of(21, 20, 400 * kTick);
  again.mutable_exec()->set_filename("/bin/sh");
  pure.apply(again);
  EXPECT_EQ(again.process().parent_exec_id(), "");
}

// A parent the event already names (the pipeline knew a launcher gone from /proc) is the
// one the table keeps, and stamps on the process's later events.
TEST(ProcessTable, ParentNamedByTheEventIsKept) {
  ProcessTable t(kBoot);
  auto exec = event_of(21, 20, 400 * kTick);
  exec.mutable_exec()->set_filename("/bin/sh");
  exec.mutable_process()->set_parent_exec_id("client-id");
  t.apply(exec);
  auto open = event_of(21, 20, 400 * kTick);
  open.mutable_file()->set_op("open");
  t.apply(open);
  EXPECT_EQ(open.process().parent_exec_id(), "client-id");
}

}  // namespace
}  // namespace agentcage::core
