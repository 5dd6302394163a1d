// SPDX-License-Identifier: Apache-2.0
// Deny rules -> inode keys (no kernel needed: stat() on files this test creates), the
// dev_t encoding the BPF side compares against, and denial records through the decoder.
#include "core/policy/lsm_policy.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "core/events/decoder.h"

namespace agentcage::core {
namespace {

std::string temp_dir() {
  std::string t = "/tmp/agentcage-unit-XXXXXX";
  if (!mkdtemp(t.data())) abort();
  return t;
}

std::string make_file(const std::string& dir, const std::string& name) {
  std::string p = dir + "/" + name;
  std::ofstream(p) << "x";
  return p;
}

TEST(LsmPolicy, KernelDevIsMajorShift20OrMinor) {
  EXPECT_EQ(kernel_dev(makedev(8, 1)), (8u << 20) | 1u);
  EXPECT_EQ(kernel_dev(makedev(0, 31)), 31u);
  // Minors above 255 are where glibc's and the kernel's encodings differ.
  EXPECT_EQ(kernel_dev(makedev(259, 0x12345)), (259u << 20) | 0x12345u);
  EXPECT_NE(kernel_dev(makedev(259, 0x12345)), static_cast<uint32_t>(makedev(259, 0x12345)));
}

TEST(LsmPolicy, ResolvesInodeAndRuleIds) {
  auto dir = temp_dir();
  auto a = make_file(dir, "a"), b = make_file(dir, "b");
  std::vector<DenyRule> rules = {{a, AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC}, {b, AC_LSM_DENY_EXEC}};
  auto r = resolve_deny_rules(77, rules);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->size(), 2u);
  struct stat st{};
  ASSERT_EQ(stat(b.c_str(), &st), 0);
  EXPECT_EQ((*r)[1].key.sandbox, 77u);
  EXPECT_EQ((*r)[1].key.ino, st.st_ino);
  EXPECT_EQ((*r)[1].key.dev, kernel_dev(st.st_dev));
  EXPECT_EQ((*r)[1].key._pad0, 0u);
  EXPECT_EQ((*r)[1].rule.rule_id, 1u);
  EXPECT_EQ((*r)[1].rule.deny, static_cast<uint32_t>(AC_LSM_DENY_EXEC));
  EXPECT_NE((*r)[0].key.ino, (*r)[1].key.ino);
}

TEST(LsmPolicy, HardLinkAndSymlinkNameTheSameInode) {
  auto dir = temp_dir();
  auto s = make_file(dir, "secret");
  ASSERT_EQ(link(s.c_str(), (dir + "/hard").c_str()), 0);
  ASSERT_EQ(symlink(s.c_str(), (dir + "/soft").c_str()), 0);
  std::vector<DenyRule> rules = {{s, AC_LSM_DENY_EXEC}, {dir + "/hard", AC_LSM_DENY_OPEN}, {dir + "/soft", AC_LSM_DENY_OPEN}};
  auto r = resolve_deny_rules(1, rules);
  ASSERT_TRUE(r) << r.error().message();
  // One inode, one map entry: the bits merge under the first rule's id.
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].rule.rule_id, 0u);
  EXPECT_EQ((*r)[0].rule.deny, static_cast<uint32_t>(AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC));
}

TEST(LsmPolicy, MissingOrRelativePathIsAnErrorNamingIt) {
  std::vector<DenyRule> missing = {{"/nonexistent/agentcage-secret", AC_LSM_DENY_OPEN}};
  auto r = resolve_deny_rules(1, missing);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("/nonexistent/agentcage-secret"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().code, ENOENT);

  std::vector<DenyRule> relative = {{"etc/passwd", AC_LSM_DENY_OPEN}};
  r = resolve_deny_rules(1, relative);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("absolute"), std::string::npos) << r.error().message();

  std::vector<DenyRule> nobits = {{"/", 0}};
  EXPECT_FALSE(resolve_deny_rules(1, nobits));
}

TEST(LsmPolicy, RuleText) {
  EXPECT_EQ(rule_text({"/s", AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC}), "deny-path /s");
  EXPECT_EQ(rule_text({"/bin/x", AC_LSM_DENY_EXEC}), "deny-exec /bin/x");
}

ac_lsm_deny_event deny_record() {
  ac_lsm_deny_event r{};
  r.hdr.type = AC_EV_LSM_DENY;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.pid = 50;
  r.hdr.tid = 50;
  r.hdr.sandbox_id = 0xabc;
  r.hook = AC_LSM_FILE_OPEN;
  r.rule_id = 2;
  r.ino = 1234;
  r.dev = (8u << 20) | 3;
  r.f_mode = 0x1;
  r.f_flags = 0;
  r.ret = -EACCES;
  std::strcpy(r.path, "/tmp/x/hard");
  r.path_len = 12;
  std::strcpy(r.comm, "cat");
  return r;
}

std::span<const std::byte> bytes(const ac_lsm_deny_event& r) {
  return std::span<const std::byte>(reinterpret_cast<const std::byte*>(&r), sizeof r);
}

TEST(LsmDecode, DenialIsABpfLsmViolation) {
  DecodeContext c = DecodeContext::for_this_host();
  c.lsm_rule_name = [](uint32_t id) { return "rule-" + std::to_string(id); };
  auto rec = deny_record();
  auto ev = decode_record(bytes(rec), c);
  ASSERT_TRUE(ev) << ev.error().message();
  ASSERT_TRUE(ev->has_violation());
  const auto& v = ev->violation();
  EXPECT_EQ(v.mechanism(), "bpf-lsm");
  EXPECT_EQ(v.action(), "deny");
  EXPECT_EQ(v.rule(), "rule-2");
  EXPECT_EQ(v.file().op(), "open");
  EXPECT_EQ(v.file().path(), "/tmp/x/hard");
  EXPECT_TRUE(v.file().path_resolved());
  EXPECT_EQ(v.file().result(), -EACCES);
  EXPECT_EQ(v.file().error(), "EACCES");
  EXPECT_NE(v.what().find("lsm/file_open"), std::string::npos) << v.what();
  EXPECT_NE(v.what().find("8:3 1234"), std::string::npos) << v.what();
  EXPECT_EQ(ev->process().comm(), "cat");
  EXPECT_EQ(ev->process().pid(), 50u);
  EXPECT_EQ(ev->sandbox_id(), "0000000000000abc");
  EXPECT_NE(to_text_line(*ev).find("bpf-lsm"), std::string::npos);
}

TEST(LsmDecode, ExecDenialsAreExecOps) {
  auto rec = deny_record();
  rec.hook = AC_LSM_BPRM_CHECK;
  auto ev = decode_record(bytes(rec), DecodeContext::for_this_host());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().file().op(), "exec");
  EXPECT_EQ(ev->violation().rule(), "inode rule 2");  // no namer: the id
  rec.hook = AC_LSM_FILE_OPEN;
  rec.f_mode = 0x20 | 0x1;  // FMODE_EXEC: exec opening the image
  ev = decode_record(bytes(rec), DecodeContext::for_this_host());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().file().op(), "exec");
  rec.f_mode = 0x1;
  rec.f_flags = 0x20 | 0x8000;  // __FMODE_EXEC | O_LARGEFILE, as exec opens it on 6.1
  ev = decode_record(bytes(rec), DecodeContext::for_this_host());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().file().op(), "exec");
}

TEST(LsmDecode, TruncatedRecordIsAnError) {
  auto rec = deny_record();
  rec.hdr.size = sizeof(ac_event_header) + 8;
  auto ev = decode_record(bytes(rec).first(rec.hdr.size), DecodeContext::for_this_host());
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message().find("lsm_deny"), std::string::npos) << ev.error().message();
}

TEST(LsmDecode, UnterminatedPathStaysInsideTheRecord) {
  auto rec = deny_record();
  std::memset(rec.path, 'a', sizeof rec.path);
  rec.path_len = 100000;
  auto ev = decode_record(bytes(rec), DecodeContext::for_this_host());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().file().path().size(), sizeof rec.path);
}

}  // namespace
}  // namespace agentcage::core
