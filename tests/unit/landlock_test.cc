// SPDX-License-Identifier: Apache-2.0
// profile -> Landlock rules: the pure mapping, per ABI, without a kernel.
#include <gtest/gtest.h>

#include "core/confine/landlock.h"

namespace agentcage::core {
namespace {

// Paths ending in '/' are directories in these tests; others are files.
auto is_dir = [](const std::string& p) { return !p.empty() && p.back() == '/'; };

const LandlockPathRule* rule(const LandlockPlan& p, const std::string& path) {
  for (const auto& r : p.paths)
    if (r.path == path) return &r;
  return nullptr;
}

TEST(Landlock, HandledRightsFollowTheAbi) {
  EXPECT_EQ(landlock_fs_rights_for_abi(0), 0u);
  EXPECT_EQ(landlock_fs_rights_for_abi(1), 0x1fffu);
  EXPECT_EQ(landlock_fs_rights_for_abi(2), 0x3fffu);  // + REFER
  EXPECT_EQ(landlock_fs_rights_for_abi(3), 0x7fffu);  // + TRUNCATE
  EXPECT_EQ(landlock_fs_rights_for_abi(4), 0x7fffu);
  EXPECT_EQ(landlock_fs_rights_for_abi(5), 0xffffu);  // + IOCTL_DEV
  EXPECT_EQ(landlock_fs_rights_for_abi(7), 0xffffu);
}

TEST(Landlock, ListsMapToRights) {
  LandlockInput in;
  in.read = {"/etc/"};
  in.write = {"/work/"};
  in.exec = {"/usr/"};
  auto p = compile_landlock(in, 7, is_dir);
  EXPECT_EQ(p.handled_fs, 0xffffu);
  ASSERT_EQ(p.paths.size(), 3u);
  EXPECT_EQ(rule(p, "/etc/")->rights, ll::kReadFile | ll::kReadDir);
  EXPECT_EQ(rule(p, "/usr/")->rights, ll::kReadFile | ll::kReadDir | ll::kExecute);
  uint64_t w = rule(p, "/work/")->rights;
  for (uint64_t r : {ll::kWriteFile, ll::kMakeReg, ll::kMakeDir, ll::kRemoveFile, ll::kRemoveDir, ll::kTruncate, ll::kMakeSym})
    EXPECT_TRUE(w & r) << landlock_fs_rights_names(r);
  // Never granted: REFER (cross-directory links/renames: hard-link smuggling), device nodes,
  // execution from the writable tree.
  EXPECT_FALSE(w & ll::kRefer);
  EXPECT_FALSE(w & ll::kMakeChar);
  EXPECT_FALSE(w & ll::kMakeBlock);
  EXPECT_FALSE(w & ll::kExecute);
}

TEST(Landlock, RightsOfOnePathAreMergedAndFilesGetFileRightsOnly) {
  LandlockInput in;
  in.read = {"/opt/tool/"};
  in.exec = {"/opt/tool/"};
  in.write = {"/dev/null"};
  auto p = compile_landlock(in, 7, is_dir);
  ASSERT_EQ(p.paths.size(), 2u);
  EXPECT_EQ(rule(p, "/opt/tool/")->rights, ll::kReadFile | ll::kReadDir | ll::kExecute);
  // The kernel rejects directory rights on a file rule (EINVAL): masked to file rights.
  EXPECT_EQ(rule(p, "/dev/null")->rights, ll::kReadFile | ll::kWriteFile | ll::kTruncate | ll::kIoctlDev);
}

TEST(Landlock, OlderAbisDropUnknownRights) {
  LandlockInput in;
  in.write = {"/w/"};
  auto p1 = compile_landlock(in, 1, is_dir);
  EXPECT_EQ(p1.handled_fs, 0x1fffu);
  EXPECT_FALSE(rule(p1, "/w/")->rights & ll::kTruncate);
  EXPECT_FALSE(rule(p1, "/w/")->rights & ll::kIoctlDev);
  auto p3 = compile_landlock(in, 3, is_dir);
  EXPECT_TRUE(rule(p3, "/w/")->rights & ll::kTruncate);
  EXPECT_FALSE(rule(p3, "/w/")->rights & ll::kIoctlDev);
  bool truncate_gap = false;
  for (const auto& u : p1.unenforced) truncate_gap |= u.find("truncate") != std::string::npos;
  EXPECT_TRUE(truncate_gap);
}

TEST(Landlock, TcpPorts) {
  LandlockInput in;
  in.restrict_net = true;
  in.bind_tcp = {8080};
  in.connect_tcp = {443, 8080};
  auto p = compile_landlock(in, 4, is_dir);
  EXPECT_EQ(p.handled_net, ll::kNetBindTcp | ll::kNetConnectTcp);
  ASSERT_EQ(p.ports.size(), 2u);
  for (const auto& r : p.ports) {
    uint64_t want = r.port == 8080 ? ll::kNetBindTcp | ll::kNetConnectTcp : ll::kNetConnectTcp;
    EXPECT_EQ(r.rights, want) << r.port;
  }
  auto old = compile_landlock(in, 3, is_dir);
  EXPECT_EQ(old.handled_net, 0u);
  EXPECT_TRUE(old.ports.empty());
  ASSERT_FALSE(old.unenforced.empty());
  EXPECT_NE(old.unenforced[0].find("ABI 4"), std::string::npos);
  // Not restricting the network handles no network right at all.
  LandlockInput open;
  EXPECT_EQ(compile_landlock(open, 7, is_dir).handled_net, 0u);
}

TEST(Landlock, Scoping) {
  LandlockInput in;
  auto p = compile_landlock(in, 6, is_dir);
  EXPECT_EQ(p.scoped, ll::kScopeSignal | ll::kScopeAbstractUnix);
  in.scope_abstract_unix = false;
  EXPECT_EQ(compile_landlock(in, 7, is_dir).scoped, ll::kScopeSignal);
  auto old = compile_landlock(in, 5, is_dir);
  EXPECT_EQ(old.scoped, 0u);
  bool gap = false;
  for (const auto& u : old.unenforced) gap |= u.find("ABI 6") != std::string::npos;
  EXPECT_TRUE(gap);
}

TEST(Landlock, RightsNames) {
  EXPECT_EQ(landlock_fs_rights_names(ll::kReadFile | ll::kReadDir), "read_file|read_dir");
  EXPECT_EQ(landlock_fs_rights_names(ll::kIoctlDev), "ioctl_dev");
  EXPECT_EQ(landlock_fs_rights_names(0), "");
}

}  // namespace
}  // namespace agentcage::core
