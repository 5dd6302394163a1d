// SPDX-License-Identifier: Apache-2.0
// What a profile keeps for an unprivileged launcher, and what agentcaged keeps for a caller.
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

// agentcaged starting a command for a caller: a root caller keeps the policy as it is;
// another caller may not switch to another user (nothing forks before that refusal).
TEST(CallerPolicy, RootKeepsThePolicyAndOthersCannotNameAUser) {
  auto p = base_policy();
  p.uid = 1000;
  auto before = p.fs.read;
  std::vector<std::string> notes;
  ASSERT_TRUE(confine_for_caller(p, 0, 0, {}, &notes));
  EXPECT_EQ(p.uid, std::optional<uid_t>(1000));
  EXPECT_EQ(p.fs.read, before);
  EXPECT_TRUE(notes.empty());
  auto st = confine_for_caller(p, 65534, 65534, {}, &notes);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("only root may run a profile as another user"), std::string::npos)
      << st.error().message();
}

}  // namespace
}  // namespace agentcage::core
