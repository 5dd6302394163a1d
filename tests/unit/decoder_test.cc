// SPDX-License-Identifier: Apache-2.0
// Synthetic kernel records, built from the shared ABI header, through the decoder.
#include "core/events/decoder.h"

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

namespace agentcage::core {
namespace {

void fill_header(ac_event_header& h, uint16_t type, size_t size) {
  h.type = type;
  h.abi_version = AC_ABI_VERSION;
  h.size = static_cast<uint32_t>(size);
  h.pid = 42;
  h.tid = 43;
  h.ppid = 7;
  h.start_ns = 3'000'000'000;
}

template <class T>
void set_header(T& r, uint16_t type) {
  fill_header(r.hdr, type, sizeof r);
}

ac_file_event open_record() {
  ac_file_event r{};
  set_header(r, AC_EV_FILE);
  r.hdr.flags = AC_F_PATH_RESOLVED;
  r.op = AC_FOP_OPEN;
  r.nr = 257;  // openat
  r.result = 3;
  r.open_flags = 0101;  // O_CREAT|O_WRONLY
  r.mode = 0644;
  r.dirfd = -100;
  std::strcpy(r.path, "/tmp/x");
  r.path_len = 7;
  return r;
}

TEST(DecoderFile, ResolvedOpen) {
  auto r = open_record();
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  ASSERT_TRUE(ev->has_file());
  const auto& f = ev->file();
  EXPECT_EQ(f.op(), "open");
  EXPECT_EQ(f.syscall(), "openat");
  EXPECT_EQ(f.path(), "/tmp/x");
  EXPECT_TRUE(f.path_resolved());
  EXPECT_EQ(f.flags(), 0101u);
  EXPECT_EQ(f.mode(), 0644u);
  EXPECT_EQ(f.result(), 3);
  EXPECT_EQ(f.dirfd(), -100);
  EXPECT_TRUE(f.error().empty());
  EXPECT_EQ(ev->process().tid(), 43u);
  auto j = to_json_line(*ev);
  EXPECT_NE(j.find("\"path_resolved\":true"), std::string::npos) << j;
  EXPECT_NE(to_text_line(*ev).find("open"), std::string::npos);
}

TEST(DecoderFile, FailedOpenCarriesErrnoName) {
  auto r = open_record();
  r.hdr.flags = 0;
  r.result = -13;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->file().error(), "EACCES");
  EXPECT_FALSE(ev->file().path_resolved());
  EXPECT_NE(to_text_line(*ev).find("= EACCES"), std::string::npos) << to_text_line(*ev);
}

// A folded failure carries its count; without the flag (or on a success) the field is
// not trusted, whatever the record holds there.
TEST(DecoderFile, AFoldedFailureCarriesItsRepeats) {
  auto r = open_record();
  r.hdr.flags = AC_F_FOLDED;
  r.result = -2;
  r.repeats = 99;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->file().repeats(), 99u);
  EXPECT_NE(to_text_line(*ev).find("= ENOENT (and 99 more identical)"), std::string::npos) << to_text_line(*ev);
  EXPECT_NE(to_json_line(*ev).find("\"repeats\":\"99\""), std::string::npos) << to_json_line(*ev);
  r.hdr.flags = 0;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->file().repeats(), 0u);
  r.hdr.flags = AC_F_FOLDED;
  r.result = 3;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->file().repeats(), 0u);
}

TEST(DecoderFile, RenameHasBothPathsAndSetxattrItsName) {
  ac_file2_event r{};
  fill_header(r.f.hdr, AC_EV_FILE2, sizeof r);
  r.f.op = AC_FOP_RENAME;
  r.f.nr = 316;  // renameat2
  std::strcpy(r.f.path, "old");
  r.f.path_len = 4;
  std::strcpy(r.path2, "new");
  r.f.path2_len = 4;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->file().op(), "rename");
  EXPECT_EQ(ev->file().syscall(), "renameat2");
  EXPECT_EQ(ev->file().path(), "old");
  EXPECT_EQ(ev->file().path2(), "new");

  r.f.op = AC_FOP_SETXATTR;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->file().xattr_name(), "new");
  EXPECT_TRUE(ev->file().path2().empty());
}

TEST(DecoderFile, MalformedRecordsAreClearErrors) {
  auto r = open_record();
  r.op = 99;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("unknown op 99"), std::string::npos) << ev.error().message();

  r = open_record();
  r.path_len = AC_PATH_MAX + 1;
  ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("path_len"), std::string::npos) << ev.error().message();

  r = open_record();
  r.path2_len = 5;  // a one-path record has no path2
  ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("path2_len"), std::string::npos) << ev.error().message();

  // A one-path record that claims to be the two-path type (sizes agree with the header).
  r = open_record();
  r.hdr.type = AC_EV_FILE2;
  ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("file2 record"), std::string::npos) << ev.error().message();

  // Every prefix of a valid record is rejected, never read past.
  r = open_record();
  for (size_t n = 0; n < sizeof r; n += 37) {
    std::vector<std::byte> buf(reinterpret_cast<const std::byte*>(&r), reinterpret_cast<const std::byte*>(&r) + n);
    EXPECT_FALSE(decode_record(buf, ctx())) << n;
  }
}

TEST(DecoderFile, UnterminatedPathStaysInBounds) {
  auto r = open_record();
  std::memset(r.path, 'p', sizeof r.path);
  r.path_len = AC_PATH_MAX;
  r.hdr.flags |= AC_F_PATH_TRUNCATED;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->file().path().size(), size_t{AC_PATH_MAX});
  EXPECT_TRUE(ev->file().path_truncated());
}

TEST(DecoderSyscall, DeniedSyscall) {
  ac_syscall_event r{};
  set_header(r, AC_EV_SYSCALL);
  r.nr = 101;  // ptrace
  r.result = -1;
  r.args[0] = 16;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->syscall().name(), "ptrace");
  EXPECT_EQ(ev->syscall().error(), "EPERM");
  ASSERT_EQ(ev->syscall().args_size(), 6);
  EXPECT_EQ(ev->syscall().args(0), 16u);

  r.result = 0;  // not a failure: the kernel never sends this
  ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("not an error"), std::string::npos);
  // ... except from a sandbox in audit mode, for a syscall its profile would refuse.
  r.hdr.flags |= AC_F_AUDIT;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->syscall().result(), 0);
  EXPECT_EQ(ev->syscall().error(), "");
}

TEST(DecoderExec, ScriptExecHasInterpreterAndResolvedImage) {
  auto r = exec_record();
  std::strcpy(r.filename, "./run.sh");
  r.filename_len = 9;
  std::strcpy(r.exe, "/usr/bin/dash");
  r.exe_len = 14;
  std::strcpy(r.interp, "/bin/sh");
  r.interp_len = 8;
  std::strcpy(r.cwd, "/work");
  r.cwd_len = 6;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->exec().filename(), "./run.sh");
  EXPECT_EQ(ev->exec().interpreter(), "/bin/sh");
  EXPECT_EQ(ev->process().binary(), "/usr/bin/dash");
  EXPECT_EQ(ev->process().cwd(), "/work");
}

TEST(DecoderExec, FailedExec) {
  ac_exec_failed_event r{};
  set_header(r, AC_EV_EXEC_FAILED);
  r.result = -2;
  std::strcpy(r.filename, "/nonexistent");
  r.filename_len = 13;
  static const char argv[] = "/nonexistent\0-x";
  std::memcpy(r.argv, argv, sizeof argv);
  r.argv_len = sizeof argv;
  r.argc = 2;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_EQ(ev->exec().result(), -2);
  EXPECT_EQ(ev->exec().error(), "ENOENT");
  ASSERT_EQ(ev->exec().argv_size(), 2);
  EXPECT_EQ(ev->exec().argv(1), "-x");
  EXPECT_EQ(ev->process().argv_size(), 0) << "the process keeps its own argv";
  EXPECT_FALSE(ev->exec().killed());
  r.hdr.flags |= AC_F_KILLED;  // actions.exec: kill: the kernel killed the caller
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  EXPECT_TRUE(ev->exec().killed());

  r.argv_len = AC_ARGV_MAX + 1;
  ev = decode_record(bytes(r), ctx());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("argv_len"), std::string::npos);
}

TEST(DecoderNames, ErrnoAndSyscallNames) {
  EXPECT_EQ(errno_name(1), "EPERM");
  EXPECT_EQ(errno_name(0), "");
  EXPECT_EQ(syscall_name(257), "openat");
  EXPECT_EQ(syscall_name(100000), "syscall_100000");
  EXPECT_STREQ(file_op_name(AC_FOP_SYMLINK), "symlink");
  EXPECT_STREQ(file_op_name(0), "unknown");
  EXPECT_STREQ(file_op_name(1000), "unknown");
}

}  // namespace
}  // namespace agentcage::core

#include <google/protobuf/util/message_differencer.h>

namespace agentcage::core {
namespace {

TEST(DecoderReuse, ResetKnowsEveryEventField) {
  EXPECT_EQ(v1::Event::descriptor()->field_count(), kEventFields)
      << "event.proto changed: update reset_event() and kEventFields in core/decoder";
}

// One Event reused across records of different kinds decodes exactly what a fresh one does.
TEST(DecoderReuse, ReusedEventEqualsFreshDecode) {
  auto file = open_record();
  auto exec = exec_record();
  ac_syscall_event sys{};
  set_header(sys, AC_EV_SYSCALL);
  sys.nr = 101;
  sys.result = -1;
  std::vector<std::span<const std::byte>> seq = {bytes(exec), bytes(file), bytes(file), bytes(sys), bytes(exec),
                                                 bytes(sys), bytes(file)};
  v1::Event reused;
  for (auto rec : seq) {
    ASSERT_TRUE(decode_record_into(rec, ctx(), reused));
    auto fresh = decode_record(rec, ctx());
    ASSERT_TRUE(fresh);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(reused, *fresh))
        << reused.DebugString() << "\nvs\n" << fresh->DebugString();
  }
}

}  // namespace
}  // namespace agentcage::core
