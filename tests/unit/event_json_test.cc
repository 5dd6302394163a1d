// SPDX-License-Identifier: Apache-2.0
// The direct JSON writer must print exactly what the descriptor-driven writer prints (the
// reference for "stable field names": it walks the .proto, so a field the fast writer
// forgets shows up), agree with protobuf's printer wherever no `bytes` field is involved,
// and carry hostile bytes losslessly as valid JSON.
#include "core/events/event_json.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string_view>

#include "agentcage/v1/control.pb.h"

namespace agentcage::core {
namespace {

std::string protobuf_printer(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(m, &out, o).ok());
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
  e = base;
  auto* n = e.mutable_net();
  n->set_op("connect");
  n->set_protocol("unix-stream");
  n->mutable_remote()->set_family("unix");
  n->mutable_remote()->set_address(std::string("@ab\0\xff", 5));
  n->mutable_local();
  n->set_result(-1);
  n->set_error("EPERM");
  v.push_back(e);
  e = base;
  auto* vi = e.mutable_violation();
  vi->set_mechanism("landlock");
  vi->set_rule("filesystem.deny: /w/.env");
  vi->set_action("deny");
  vi->set_what("open /w/.env\x1b[2J\nVIOLATION fake");
  vi->mutable_file()->set_op("open");
  vi->mutable_file()->set_path("/w/.env");
  v.push_back(e);
  e = base;
  e.mutable_violation()->mutable_net()->mutable_remote()->set_port(443);
  v.push_back(e);
  e = base;
  e.mutable_violation()->mutable_syscall()->set_name("bpf");
  v.push_back(e);
  v.push_back(v1::Event{});
  return v;
}

TEST(EventJson, MatchesTheDescriptorDrivenWriterByteForByte) {
  for (const auto& ev : samples()) EXPECT_EQ(fast(ev), message_json(ev)) << ev.DebugString();
}

TEST(EventJson, MatchesProtobufsPrinterWhereNoBytesFieldIsSet) {
  v1::Event ev;
  ev.set_node("n1");
  ev.set_seq(7);
  ev.mutable_process()->set_pid(3);
  ev.mutable_process()->set_exec_id("b:1:3");
  ev.mutable_syscall()->set_name("ptrace");
  ev.mutable_syscall()->add_args(18446744073709551615ull);
  EXPECT_EQ(fast(ev), protobuf_printer(ev));
  v1::Event l;
  l.mutable_loss()->set_reason("decode_error");
  EXPECT_EQ(fast(l), protobuf_printer(l));
}

// The inverse of the writer's string escaping, with \udcXX back to the byte XX.
std::string unquote(std::string_view j) {
  std::string out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (j[i] != '\\') {
      out += j[i];
      continue;
    }
    char c = j[++i];
    if (c == 'u') {
      unsigned v = std::stoul(std::string(j.substr(i + 1, 4)), nullptr, 16);
      i += 4;
      if (v >= 0xdc80 && v <= 0xdcff) out += static_cast<char>(v & 0xff);
      else if (v < 0x80) out += static_cast<char>(v);
      else ADD_FAILURE() << "unexpected escape " << std::hex << v;
    } else {
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
    }
  }
  return out;
}

TEST(EventJson, InvalidUtf8IsValidJsonAndLossless) {
  const std::string path("/tmp/\xff\xfe\xc3(\xed\xa0\x80 \xc3\xa9\x01\"\\", 18);  // bytes a path may hold
  v1::Event ev;
  ev.mutable_file()->set_path(path);
  auto j = fast(ev);
  EXPECT_EQ(j, std::string(R"({"file":{"path":"/tmp/\udcff\udcfe\udcc3(\udced\udca0\udc80 )") + "\xc3\xa9" +
                   R"(\u0001\"\\"}})");
  auto start = j.find("\"path\":\"") + 8, end = j.rfind("\"}}");
  EXPECT_EQ(unquote(std::string_view(j).substr(start, end - start)), path) << j;
  // Every byte value survives, alone and after a UTF-8 lead byte.
  for (int b = 0; b < 256; ++b) {
    std::string s = {static_cast<char>(b), 'x', '\xc3', static_cast<char>(b)};
    v1::Event e;
    e.mutable_process()->add_argv(s);
    auto js = fast(e);
    auto a = js.find("[\"") + 2, z = js.rfind("\"]");
    EXPECT_EQ(unquote(std::string_view(js).substr(a, z - a)), s) << b << " " << js;
  }
}

TEST(EventJson, ReadsBackWhatItWritesLosslessly) {
  auto evs = samples();
  v1::Event odd;
  odd.mutable_process()->add_argv(std::string("a\xff\0\x1b\xed\xa0\x80\xf0\x9f\x98\x80", 10));
  odd.mutable_file()->set_path(std::string("\xc3(", 2));
  evs.push_back(odd);
  for (const auto& ev : evs) {
    v1::Event back;
    auto st = message_from_json(fast(ev), &back);
    ASSERT_TRUE(st.has_value()) << st.error().message() << "\n" << fast(ev);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(ev, back)) << fast(ev);
  }
  v1::Event junk;
  auto bad = message_from_json(R"({"process":{"pid":1},"nope":2})", &junk);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("unknown field \"nope\""), std::string::npos) << bad.error().message();
  EXPECT_FALSE(message_from_json(R"({"process":{"pid":"x"}})", &junk).has_value());
  EXPECT_FALSE(message_from_json(R"({"seq":"1"} trailing)", &junk).has_value());
}

TEST(EventJson, AnyMessageWritesBytesAsTextNotBase64) {
  v1::Sandbox sb;
  sb.set_id("00000000000000ab");
  sb.add_argv("/bin/echo");
  sb.add_argv(std::string("bad\xffname", 8));
  EXPECT_EQ(message_json(sb), R"({"id":"00000000000000ab","argv":["/bin/echo","bad\udcffname"]})");
}

}  // namespace
}  // namespace agentcage::core
