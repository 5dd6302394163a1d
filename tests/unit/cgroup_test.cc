// SPDX-License-Identifier: Apache-2.0
#include "core/confine/cgroup.h"

#include <gtest/gtest.h>

namespace agentcage::core {
namespace {

// Captured from the development machine: hybrid v1 + v2 layout.
constexpr const char* kHybrid =
    "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

// A unified-only host (systemd default), with optional fields before the separator.
constexpr const char* kUnified =
    "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";

TEST(CgroupDiscovery, HybridFindsUnified) {
  auto m = find_cgroup2_mount(kHybrid);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(*m, "/sys/fs/cgroup/unified");
}

TEST(CgroupDiscovery, UnifiedOnly) {
  auto m = find_cgroup2_mount(kUnified);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(*m, "/sys/fs/cgroup");
}

TEST(CgroupDiscovery, EscapedMountPoint) {
  auto m = find_cgroup2_mount("41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, "/mnt/my cgroups");
}

TEST(CgroupDiscovery, NoneIsAClearError) {
  auto m = find_cgroup2_mount("22 1 254:0 / / rw - ext4 /dev/vda rw\n");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("cgroup2"), std::string::npos);
  EXPECT_NE(m.error().message().find("hint:"), std::string::npos);
}

TEST(CgroupDiscovery, MalformedLinesAreSkipped) {
  auto m = find_cgroup2_mount("garbage\n\n1 2 3\n- - -\n41 31 0:38 / /x rw - cgroup2 c rw\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, "/x");
}

TEST(CgroupDiscovery, V1ControllerMatchesWholeWord) {
  auto m = find_cgroup1_mount(kHybrid, "pids");
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, "/sys/fs/cgroup/pids");
  auto cpu = find_cgroup1_mount(kHybrid, "cpu");
  ASSERT_TRUE(cpu);
  EXPECT_EQ(*cpu, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_FALSE(find_cgroup1_mount(kHybrid, "cpus"));
  EXPECT_FALSE(find_cgroup1_mount(kUnified, "pids"));
}

}  // namespace
}  // namespace agentcage::core
