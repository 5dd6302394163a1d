// SPDX-License-Identifier: Apache-2.0
// What a profile keeps for an unprivileged launcher (daemon mode), and what it refuses.
#include <gtest/gtest.h>

#include "core/sandbox/sandbox_policy.h"

namespace agentcage::core {
namespace {

ConfinePolicy base_policy() {
  ConfinePolicy p;
  p.fs.read = {"/etc", "/usr"};
  p.fs.write = {"/nonexistent-agentcage-ws"};
  p.max_pids = 64;
  p.namespaces.ipc = true;
  p.namespaces.uts = true;
  p.rlimits.push_back({RLIMIT_CORE, 0, 0});
  return p;
}

TEST(UnprivilegedPolicy, KeepsLandlockSeccompAndLimitsDropsWhatNeedsRoot) {
  auto p = base_policy();
  p.fs.deny = {"/nonexistent-agentcage-ws/secret"};
  p.uid = 65534;
  std::vector<std::string> notes;
  limit_to_unprivileged(p, &notes);
  EXPECT_TRUE(p.unprivileged);
  EXPECT_TRUE(p.fs.restrict);
  EXPECT_FALSE(p.fs.private_view);
  EXPECT_TRUE(p.fs.deny.empty());
  EXPECT_EQ(p.max_pids, 0u);
  EXPECT_FALSE(p.uid.has_value());
  EXPECT_FALSE(p.namespaces.ipc || p.namespaces.uts);
  EXPECT_EQ(p.fs.read, (std::vector<std::string>{"/etc", "/usr"}));
  EXPECT_EQ(p.rlimits.size(), 1u);
  EXPECT_EQ(notes.size(), 3u);  // view, pids, namespaces
}

TEST(UnprivilegedPolicy, ReachableDenyInsideAnAllowedTreeIsRefused) {
  auto p = base_policy();
  p.fs.deny = {"/etc/hostname"};  // readable by everyone, inside /etc
  auto st = check_unprivileged_enforceable(p);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("/etc/hostname"), std::string::npos) << st.error().message();
  EXPECT_NE(st.error().message().find("run as root"), std::string::npos) << st.error().message();
}

TEST(UnprivilegedPolicy, DenyOutsideTheTreesOrUnreachableIsFine) {
  auto p = base_policy();
  p.fs.deny = {"/srv/x", "/etc/agentcage-does-not-exist", "/var/lib/whatever"};
  EXPECT_TRUE(check_unprivileged_enforceable(p));
}

TEST(UnprivilegedPolicy, NetNamespaceAndIdSwitchNeedRoot) {
  auto p = base_policy();
  p.namespaces.net = true;
  EXPECT_FALSE(check_unprivileged_enforceable(p));
  p = base_policy();
  p.uid = 1;
  EXPECT_FALSE(check_unprivileged_enforceable(p));
}

}  // namespace
}  // namespace agentcage::core
