// SPDX-License-Identifier: Apache-2.0
// Synthetic kernel records, built from the shared ABI header, through the decoder.
#include "core/decoder.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <agentcage/abi.h>

#include <cstring>
#include <vector>

namespace agentcage::core {
namespace {

DecodeContext ctx() { return DecodeContext{"node1", "0123456789abcdef", 1'000}; }

template <class T>
std::span<const std::byte> bytes(const T& rec) {
  return std::span<const std::byte>(reinterpret_cast<const std::byte*>(&rec), sizeof rec);
}

ac_exec_event exec_record() {
  ac_exec_event r{};
  r.hdr.type = AC_EV_EXEC;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.pid = 42;
  r.hdr.tid = 42;
  r.hdr.ppid = 7;
  r.hdr.ktime_ns = 5'000;
  r.hdr.start_ns = 3'000'000'000;
  r.hdr.sandbox_id = 0xabc;
  std::strcpy(r.filename, "/bin/echo");
  r.filename_len = 10;
  static const char argv[] = "/bin/echo\0hi\0there";
  std::memcpy(r.argv, argv, sizeof argv);
  r.argv_len = sizeof argv;
  r.argc = 3;
  return r;
}

TEST(Decoder, Exec) {
  auto r = exec_record();
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  ASSERT_TRUE(ev->has_exec());
  EXPECT_EQ(ev->exec().filename(), "/bin/echo");
  EXPECT_EQ(ev->process().pid(), 42u);
  EXPECT_EQ(ev->process().ppid(), 7u);
  EXPECT_EQ(ev->sandbox_id(), "0000000000000abc");
  EXPECT_EQ(ev->time_ns(), 6'000u);
  ASSERT_EQ(ev->process().argv_size(), 3);
  EXPECT_EQ(ev->process().argv(1), "hi");
  EXPECT_EQ(ev->process().argv(2), "there");
  EXPECT_FALSE(ev->process().argv_truncated());
  EXPECT_EQ(ev->process().exec_id(), make_exec_id("0123456789abcdef", 42, 3'000'000'000));
}

TEST(Decoder, ExecIdIsStableAcrossExecAndDistinctAcrossPidReuse) {
  EXPECT_EQ(make_exec_id("b", 1, 1'000'000'000), make_exec_id("b", 1, 1'000'000'001));
  EXPECT_NE(make_exec_id("b", 1, 1'000'000'000), make_exec_id("b", 1, 2'000'000'000));
  EXPECT_NE(make_exec_id("b", 1, 1'000'000'000), make_exec_id("c", 1, 1'000'000'000));
}

TEST(Decoder, UnterminatedStringsStayInBounds) {
  auto r = exec_record();
  std::memset(r.filename, 'A', sizeof r.filename);  // no NUL anywhere
  r.filename_len = 60000;                           // lies about its length
  std::memset(r.argv, 'B', sizeof r.argv);
  r.argv_len = 60000;
  r.hdr.flags = AC_F_ARGV_TRUNCATED;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->exec().filename().size(), sizeof r.filename);
  ASSERT_EQ(ev->process().argv_size(), 1);
  EXPECT_EQ(ev->process().argv(0).size(), sizeof r.argv);
  EXPECT_TRUE(ev->process().argv_truncated());
}

TEST(Decoder, TruncatedRecordIsAnError) {
  auto r = exec_record();
  for (size_t n : {size_t{0}, size_t{10}, sizeof(ac_event_header), sizeof r - 1}) {
    std::vector<std::byte> buf(reinterpret_cast<const std::byte*>(&r), reinterpret_cast<const std::byte*>(&r) + n);
    auto ev = decode_record(buf, ctx());
    EXPECT_FALSE(ev) << n;
  }
}

TEST(Decoder, SizeMismatchIsAnError) {
  auto r = exec_record();
  r.hdr.size = 100;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("header says 100"), std::string::npos);
}

TEST(Decoder, WrongAbiVersionIsAnError) {
  auto r = exec_record();
  r.hdr.abi_version = AC_ABI_VERSION + 1;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("ABI"), std::string::npos);
}

TEST(Decoder, UnknownTypeIsAnError) {
  ac_event_header h{};
  h.type = 999;
  h.abi_version = AC_ABI_VERSION;
  h.size = sizeof h;
  auto ev = decode_record(bytes(h), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("unknown record type 999"), std::string::npos);
}

TEST(Decoder, ExitBySignal) {
  ac_exit_event r{};
  r.hdr.type = AC_EV_EXIT;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.exit_code = SIGKILL;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exit().signal(), SIGKILL);
  EXPECT_EQ(ev->exit().code(), 0);
  r.exit_code = 3 << 8;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->exit().signal(), 0);
  EXPECT_EQ(ev->exit().code(), 3);
}

TEST(Decoder, JsonUsesProtoFieldNames) {
  auto r = exec_record();
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  auto j = to_json_line(*ev);
  EXPECT_NE(j.find("\"sandbox_id\":\"0000000000000abc\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"exec_id\""), std::string::npos) << j;
  EXPECT_EQ(j.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace agentcage::core
