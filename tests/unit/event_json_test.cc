// SPDX-License-Identifier: Apache-2.0
// The direct JSON writer must print exactly what protobuf's JSON printer prints (the
// reference for "stable field names"), and stay valid JSON on hostile strings.
#include "core/events/event_json.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

namespace agentcage::core {
namespace {

std::string reference(const v1::Event& ev) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(ev, &out, o).ok());
  return out;
}

std::string fast(const v1::Event& ev) {
  std::string out;
  append_event_json(ev, out);
  return out;
}

std::vector<v1::Event> samples() {
  std::vector<v1::Event> v;
  v1::Event base;
  base.set_node("n1");
  base.set_time_ns(1795698867678933661ull);
  base.set_ktime_ns(1);
  base.set_sandbox_id("00000000000000ab");
  auto* p = base.mutable_process();
  p->set_pid(10);
  p->set_tid(11);
  p->set_ppid(1);
  p->set_exec_id("b:1:10");
  p->set_parent_exec_id("b:0:1");
  p->set_uid(1000);
  p->set_binary("/usr/bin/dash");
  p->add_argv("sh");
  p->add_argv("-c");
  p->add_argv("echo \"hi\"\\\n\t\x01 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  p->set_argv_truncated(true);
  p->set_cwd("/tmp");
  p->set_comm("sh");
  p->set_cgroup_id(747);
  p->set_start_time_ns(18446744073709551615ull);

  auto e = base;
  e.mutable_exec()->set_filename("./s.sh");
  e.mutable_exec()->set_argc(2);
  e.mutable_exec()->set_interpreter("/bin/sh");
  v.push_back(e);
  e = base;
  e.mutable_exec()->set_result(-2);
  e.mutable_exec()->set_error("ENOENT");
  e.mutable_exec()->add_argv("/x");
  v.push_back(e);
  e = base;
  e.mutable_fork()->set_child_pid(12);
  e.mutable_fork()->set_child_exec_id("b:2:12");
  v.push_back(e);
  e = base;
  e.mutable_exit();  // empty but set: printed as {}
  v.push_back(e);
  e = base;
  e.mutable_exit()->set_status(9);
  e.mutable_exit()->set_signal(9);
  e.mutable_exit()->set_core_dumped(true);
  v.push_back(e);
  e = base;
  e.set_host_mode(true);
  auto* f = e.mutable_file();
  f->set_op("rename");
  f->set_path("/a");
  f->set_path_resolved(true);
  f->set_path_truncated(true);
  f->set_path2("/b");
  f->set_flags(0101);
  f->set_mode(0644);
  f->set_owner_uid(4294967295u);
  f->set_owner_gid(2);
  f->set_xattr_name("user.x");
  f->set_result(-13);
  f->set_error("EACCES");
  f->set_syscall("renameat2");
  f->set_dirfd(-100);
  v.push_back(e);
  e = base;
  e.mutable_syscall()->set_nr(101);
  e.mutable_syscall()->set_name("ptrace");
  e.mutable_syscall()->set_result(-1);
  e.mutable_syscall()->set_error("EPERM");
  for (uint64_t a : {0ull, 1ull, 18446744073709551615ull}) e.mutable_syscall()->add_args(a);
  v.push_back(e);
  v1::Event loss;
  loss.set_seq(5);
  loss.mutable_loss()->set_count(3);
  loss.mutable_loss()->set_reason("ringbuf_full");
  loss.mutable_loss()->set_where("kernel");
  v.push_back(loss);
  v.push_back(v1::Event{});
  return v;
}

TEST(EventJson, MatchesTheProtobufPrinterByteForByte) {
  for (const auto& ev : samples()) EXPECT_EQ(fast(ev), reference(ev)) << ev.DebugString();
}

TEST(EventJson, InvalidUtf8StaysValidJson) {
  v1::Event ev;
  ev.mutable_file()->set_path(std::string("/tmp/\xff\xfe\xc3(\xed\xa0\x80", 12));  // bytes a path may hold
  auto j = fast(ev);
  v1::Event back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(j, &back).ok()) << j;
  EXPECT_EQ(back.file().path().substr(0, 5), "/tmp/");
}

}  // namespace
}  // namespace agentcage::core
