// SPDX-License-Identifier: Apache-2.0
// The process tree from synthetic events shaped like the daemon's: fork events carry the
// parent's pid only (no exec_id), exec/exit events carry exec_id and ppid but no
// parent_exec_id.
#include "core/store/process_tree.h"

#include <gtest/gtest.h>

namespace agentcage::core {
namespace {

std::string id(uint32_t pid, int gen = 0) { return "boot-" + std::to_string(pid) + "-" + std::to_string(gen); }

v1::Event fork_ev(uint32_t parent_pid, uint32_t child, const std::string& child_id) {
  v1::Event e;
  e.mutable_process()->set_pid(parent_pid);
  e.mutable_process()->set_comm("parent-comm");
  e.mutable_fork()->set_child_pid(child);
  e.mutable_fork()->set_child_exec_id(child_id);
  return e;
}

v1::Event exec_ev(uint32_t pid, uint32_t ppid, const std::string& eid, const std::string& binary, int result = 0) {
  v1::Event e;
  auto* p = e.mutable_process();
  p->set_pid(pid);
  p->set_ppid(ppid);
  p->set_exec_id(eid);
  p->set_binary(binary);
  p->add_argv(binary);
  e.mutable_exec()->set_filename(binary);
  e.mutable_exec()->set_result(result);
  return e;
}

v1::Event exit_ev(uint32_t pid, const std::string& eid, int code, int sig = 0) {
  v1::Event e;
  e.set_time_ns(1000 + pid);
  e.mutable_process()->set_pid(pid);
  e.mutable_process()->set_exec_id(eid);
  e.mutable_exit()->set_code(code);
  e.mutable_exit()->set_signal(sig);
  return e;
}

size_t count(const v1::ProcessNode& n) {
  size_t c = 1;
  for (const auto& k : n.children()) c += count(k);
  return c;
}
size_t depth(const v1::ProcessNode& n) {
  size_t d = 0;
  for (const auto& k : n.children()) d = std::max(d, depth(k));
  return d + 1;
}
size_t count(const v1::ProcessTreeResponse& t) {
  size_t c = 0;
  for (const auto& r : t.roots()) c += count(r);
  return c;
}

TEST(ProcessTree, ForkExecExitShapeTheTree) {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(100, 50, id(100), "/bin/sh"));        // the sandbox's first process
  evs.push_back(fork_ev(100, 101, id(101)));
  evs.push_back(exec_ev(101, 100, id(101), "/bin/echo"));
  evs.push_back(exit_ev(101, id(101), 0));
  evs.push_back(fork_ev(100, 102, id(102)));                   // a subshell that never execs
  evs.push_back(fork_ev(102, 103, id(103)));
  evs.push_back(exec_ev(103, 102, id(103), "/bin/cat"));
  evs.push_back(exec_ev(103, 102, id(103), "/nope", -2));       // failed: cat runs on
  evs.push_back(exit_ev(102, id(102), 0, 9));
  v1::Event loss;
  loss.mutable_loss()->set_count(3);
  evs.push_back(loss);                                           // ignored, no crash
  evs.push_back(exit_ev(100, id(100), 5));

  auto t = build_process_tree(evs);
  ASSERT_EQ(t.roots_size(), 1);
  const auto& sh = t.roots(0);
  EXPECT_EQ(sh.process().binary(), "/bin/sh");
  EXPECT_EQ(sh.process().pid(), 100u);
  EXPECT_TRUE(sh.exited());
  EXPECT_EQ(sh.exit_status(), 5);
  ASSERT_EQ(sh.children_size(), 2);
  const auto& echo = sh.children(0);
  EXPECT_EQ(echo.process().binary(), "/bin/echo");
  EXPECT_EQ(echo.process().exec_id(), id(101));
  EXPECT_EQ(echo.process().parent_exec_id(), id(100));
  EXPECT_TRUE(echo.exited());
  EXPECT_EQ(echo.exit_status(), 0);
  const auto& sub = sh.children(1);
  EXPECT_EQ(sub.process().pid(), 102u);
  EXPECT_EQ(sub.process().binary(), "/bin/sh");  // the parent's image, its own pid
  EXPECT_EQ(sub.exit_status(), 128 + 9);
  ASSERT_EQ(sub.children_size(), 1);
  EXPECT_EQ(sub.children(0).process().binary(), "/bin/cat");
  EXPECT_FALSE(sub.children(0).exited());
  EXPECT_EQ(count(t), 4u);
}

TEST(ProcessTree, ReusedPidIsANewProcessUnderTheRightParent) {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(10, 1, id(10), "/bin/sh"));
  evs.push_back(fork_ev(10, 11, id(11, 0)));
  evs.push_back(exec_ev(11, 10, id(11, 0), "/bin/a"));
  evs.push_back(exit_ev(11, id(11, 0), 1));
  evs.push_back(fork_ev(10, 12, id(12)));
  evs.push_back(exec_ev(12, 10, id(12), "/bin/b"));
  evs.push_back(fork_ev(12, 11, id(11, 1)));  // pid 11 again, child of 12 this time
  evs.push_back(exec_ev(11, 12, id(11, 1), "/bin/c"));
  auto t = build_process_tree(evs);
  ASSERT_EQ(t.roots_size(), 1);
  ASSERT_EQ(t.roots(0).children_size(), 2);
  EXPECT_EQ(t.roots(0).children(0).process().binary(), "/bin/a");
  EXPECT_TRUE(t.roots(0).children(0).exited());
  const auto& b = t.roots(0).children(1);
  EXPECT_EQ(b.process().binary(), "/bin/b");
  ASSERT_EQ(b.children_size(), 1);
  EXPECT_EQ(b.children(0).process().binary(), "/bin/c");
  EXPECT_EQ(b.children(0).process().exec_id(), id(11, 1));
  EXPECT_FALSE(b.children(0).exited());
}

TEST(ProcessTree, ParentFoundByPpidWhenTheForkWasNotSeen) {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(20, 1, id(20), "/bin/sh"));
  evs.push_back(exec_ev(21, 20, id(21), "/bin/ls"));  // its fork was lost
  v1::Event file;
  *file.mutable_process() = exec_ev(22, 21, id(22), "/bin/x").process();
  file.mutable_file()->set_op("open");
  evs.push_back(file);  // known only through an action
  auto t = build_process_tree(evs);
  ASSERT_EQ(t.roots_size(), 1);
  ASSERT_EQ(t.roots(0).children_size(), 1);
  EXPECT_EQ(t.roots(0).children(0).process().binary(), "/bin/ls");
  ASSERT_EQ(t.roots(0).children(0).children_size(), 1);
  EXPECT_EQ(t.roots(0).children(0).children(0).process().pid(), 22u);
}

// A long fork chain stays readable: depth is capped below protobuf's parse limit (100)
// and no process is dropped.
TEST(ProcessTree, DeepChainIsCappedAndStillParses) {
  std::vector<v1::Event> evs;
  evs.push_back(exec_ev(1000, 1, id(1000), "/bin/sh"));
  for (uint32_t i = 0; i < 300; ++i) evs.push_back(fork_ev(1000 + i, 1001 + i, id(1001 + i)));
  auto t = build_process_tree(evs);
  EXPECT_EQ(count(t), 301u);
  EXPECT_GT(t.roots_size(), 1);
  for (const auto& r : t.roots()) EXPECT_LE(depth(r), kMaxTreeDepth);
  std::string bytes;
  ASSERT_TRUE(t.SerializeToString(&bytes));
  v1::ProcessTreeResponse back;
  EXPECT_TRUE(back.ParseFromString(bytes));
  EXPECT_EQ(count(back), 301u);
  // The re-attached roots still name their real parent.
  EXPECT_EQ(t.roots(1).process().parent_exec_id(), id(1000 + kMaxTreeDepth - 1));
}

TEST(ProcessTree, InconsistentParentCycleShowsEveryProcessOnce) {
  std::vector<v1::Event> evs;
  auto a = exec_ev(1, 0, "a", "/a");
  a.mutable_process()->set_parent_exec_id("b");
  auto b = exec_ev(2, 0, "b", "/b");
  b.mutable_process()->set_parent_exec_id("a");
  evs.push_back(a);
  evs.push_back(b);
  auto t = build_process_tree(evs);
  EXPECT_EQ(count(t), 2u);
  ASSERT_EQ(t.roots_size(), 1);
  EXPECT_EQ(t.roots(0).process().exec_id(), "a");
}

TEST(ProcessTree, EmptyInputIsAnEmptyForest) {
  EXPECT_EQ(build_process_tree({}).roots_size(), 0);
}

}  // namespace
}  // namespace agentcage::core
