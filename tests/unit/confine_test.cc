// SPDX-License-Identifier: Apache-2.0
// Pure parts of confinement: violation attribution, pids mechanism choice, mask paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "core/confine.h"
#include "core/mount_mask.h"
#include "core/pids_limit.h"

namespace agentcage::core {
namespace {

ConfineDecisions decisions(SeccompAction action = SeccompAction::errno_ret) {
  ConfineDecisions d;
  d.policy.fs.read = {"/etc"};
  d.policy.fs.exec = {"/usr"};
  d.policy.fs.write = {"/work"};
  d.policy.fs.deny = {"/work/.env", "/work/secrets"};
  d.policy.net.restrict = true;
  d.policy.net.connect_tcp = {443};
  d.policy.seccomp.action = action;
  d.policy.seccomp.deny = {"mknod"};
  LandlockInput in{d.policy.fs.read, d.policy.fs.write, d.policy.fs.exec, true, {}, {443}, true, true};
  d.landlock = compile_landlock(in, 7, [](const std::string&) { return true; });
  d.landlock_enforced = true;
  auto sc = compile_seccomp(d.policy.seccomp, false);
  EXPECT_TRUE(sc.has_value());
  if (sc) d.seccomp_denied = sc->denied;
  d.masks.entries = {{"/work/.env", false}, {"/work/secrets", true}};
  d.masks.readonly_view = true;
  d.masks.writable = {"/work"};
  d.masks_enforced = true;
  return d;
}

FailedOp op(long nr, int err, std::string path = {}, int flags = -1) {
  FailedOp o;
  o.nr = nr;
  o.err = err;
  o.path = std::move(path);
  o.open_flags = flags;
  return o;
}

TEST(Attribute, Seccomp) {
  auto d = decisions();
  auto v = attribute(d, op(SYS_ptrace, EPERM));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "seccomp");
  EXPECT_NE(v->rule.find("ptrace"), std::string::npos);
  EXPECT_NE(v->rule.find("builtin"), std::string::npos);
  v = attribute(d, op(SYS_mknod, EPERM));
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("profile"), std::string::npos);
  // A different errno is not ours; neither is an allowed syscall.
  EXPECT_FALSE(attribute(d, op(SYS_ptrace, ESRCH)));
  EXPECT_FALSE(attribute(d, op(SYS_getpid, EPERM)));
  // Conditional rules need the arguments to be sure.
  FailedOp io = op(SYS_ioctl, EPERM);
  io.has_args = true;
  io.args[1] = TIOCSTI;
  v = attribute(d, io);
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("TIOCSTI"), std::string::npos);
  io.args[1] = TCGETS;
  EXPECT_FALSE(attribute(d, io));
  // With the kill action a denial is a SIGSYS death, not an errno.
  EXPECT_FALSE(attribute(decisions(SeccompAction::kill), op(SYS_ptrace, EPERM)));
}

TEST(Attribute, MountMaskAndReadOnlyView) {
  auto d = decisions();
  auto v = attribute(d, op(SYS_openat, EACCES, "/work/.env", O_RDONLY));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "mount_mask");
  EXPECT_EQ(v->rule, "filesystem.deny: /work/.env");
  v = attribute(d, op(SYS_openat, EACCES, "/work/secrets/id_rsa", O_RDONLY));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->rule, "filesystem.deny: /work/secrets");
  v = attribute(d, op(SYS_chmod, EROFS, "/etc/passwd"));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "mount_mask");
  EXPECT_NE(v->rule.find("read-only view"), std::string::npos);
  // /work/secrets2 is not beneath /work/secrets.
  EXPECT_FALSE(attribute(d, op(SYS_openat, EACCES, "/work/secrets2", O_RDONLY)));
}

TEST(Attribute, Landlock) {
  auto d = decisions();
  auto v = attribute(d, op(SYS_openat, EACCES, "/root/.ssh/id_rsa", O_RDONLY));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "landlock");
  EXPECT_NE(v->rule.find("read_file"), std::string::npos);
  v = attribute(d, op(SYS_openat, EACCES, "/etc/passwd", O_WRONLY));
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("write_file"), std::string::npos);
  v = attribute(d, op(SYS_execve, EACCES, "/work/a.out"));
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("execute"), std::string::npos);
  // Granted by a rule: a denial there is not Landlock's (plain DAC, say).
  EXPECT_FALSE(attribute(d, op(SYS_openat, EACCES, "/etc/passwd", O_RDONLY)));
  EXPECT_FALSE(attribute(d, op(SYS_openat, ENOENT, "/nope", O_RDONLY)));
  // Cross-directory link: REFER is never granted.
  v = attribute(d, op(SYS_link, EXDEV, "/work/x"));
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("refer"), std::string::npos);

  FailedOp c = op(SYS_connect, EACCES);
  c.port = 22;
  v = attribute(d, c);
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("port 22"), std::string::npos);
  c.port = 443;
  EXPECT_FALSE(attribute(d, c));

  v = attribute(d, op(SYS_kill, EPERM));
  ASSERT_TRUE(v);
  EXPECT_NE(v->rule.find("signal"), std::string::npos);

  d.landlock_enforced = false;  // audit mode: nothing was denied by Landlock
  EXPECT_FALSE(attribute(d, op(SYS_openat, EACCES, "/root/x", O_RDONLY)));
}

TEST(PidsLimit, MechanismChoice) {
  EXPECT_EQ(choose_pids_mechanism(true, "/sys/fs/cgroup/pids"), PidsMechanism::cgroup_v2);
  EXPECT_EQ(choose_pids_mechanism(false, "/sys/fs/cgroup/pids"), PidsMechanism::cgroup_v1);
  EXPECT_EQ(choose_pids_mechanism(false, ""), PidsMechanism::none);
}

TEST(MountMask, PathWithin) {
  EXPECT_TRUE(path_within("/a/b", "/a/b"));
  EXPECT_TRUE(path_within("/a/b/c", "/a/b"));
  EXPECT_TRUE(path_within("/a/b/c", "/a/b/"));
  EXPECT_FALSE(path_within("/a/bc", "/a/b"));
  EXPECT_FALSE(path_within("/a", "/a/b"));
  EXPECT_TRUE(path_within("/x", "/"));
}

TEST(MountMask, RelativeDenyPathIsAnError) {
  auto m = prepare_mount_mask({"relative/path"}, "/nonexistent", false, {});
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().message().find("filesystem.deny"), std::string::npos);
}

}  // namespace
}  // namespace agentcage::core
