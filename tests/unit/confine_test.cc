// SPDX-License-Identifier: Apache-2.0
// Pure parts of confinement: violation attribution, cgroup limit choices, mask paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <filesystem>
#include <fstream>

#include "core/confine/confine.h"
#include "core/confine/mount_mask.h"
#include "core/confine/cgroup_limit.h"
#include "core/events/attribution.h"

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
  d.masks.private_view = true;
  d.masks.visible = {"/etc", "/usr", "/work"};
  d.masks.writable = {"/work"};
  d.masks_enforced = true;
  return d;
}

v1::Event failed_exec(const std::string& filename, const std::string& cwd, const char* err = "EACCES") {
  v1::Event ev;
  ev.mutable_process()->set_pid(0);  // no live process: only the recorded cwd resolves
  ev.mutable_process()->set_cwd(cwd);
  ev.mutable_exec()->set_filename(filename);
  ev.mutable_exec()->set_result(-EACCES);
  ev.mutable_exec()->set_error(err);
  return ev;
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
  EXPECT_EQ(v->mechanism, "mount_view");
  EXPECT_NE(v->rule.find("read-only"), std::string::npos);
  v = attribute(d, op(SYS_connect, ENOENT, "/run/docker.sock"));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "mount_view");
  EXPECT_FALSE(attribute(d, op(SYS_openat, ENOENT, "/work/missing.txt", O_RDONLY)));
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
  EXPECT_EQ(v->rule, "filesystem.exec: /work/a.out is outside the exec paths");
  // Granted by a rule: a denial there is not Landlock's (plain DAC, say).
  EXPECT_FALSE(attribute(d, op(SYS_openat, EACCES, "/etc/passwd", O_RDONLY)));
  EXPECT_FALSE(attribute(d, op(SYS_openat, ENOENT, "/etc/nope", O_RDONLY)));
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

TEST(Attribute, SigsysUnderKillAction) {
  auto k = decisions(SeccompAction::kill);
  auto v = attribute_exit(k, SIGSYS);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "seccomp");
  EXPECT_FALSE(attribute_exit(k, SIGKILL));
  EXPECT_FALSE(attribute_exit(decisions(), SIGSYS));
}

TEST(CgroupLimit, MechanismChoice) {
  EXPECT_EQ(choose_limit_mechanism(true, "/sys/fs/cgroup/pids"), LimitMechanism::cgroup_v2);
  EXPECT_EQ(choose_limit_mechanism(false, "/sys/fs/cgroup/pids"), LimitMechanism::cgroup_v1);
  EXPECT_EQ(choose_limit_mechanism(false, ""), LimitMechanism::none);
}

// Issue 11 item 3: what each limit writes, in each hierarchy's spelling.
TEST(CgroupLimit, SpecsWriteEachHierarchysFiles) {
  auto m = memory_limit_spec(512ull << 20);
  EXPECT_EQ(m.controller, "memory");
  ASSERT_EQ(m.settings.size(), 2u);
  // Memory first: v1 refuses a memsw limit below the memory limit.
  EXPECT_EQ(m.settings[0].v2_file, "memory.max");
  EXPECT_EQ(m.settings[0].v1_file, "memory.limit_in_bytes");
  EXPECT_EQ(m.settings[0].v1_value, "536870912");
  EXPECT_TRUE(m.settings[0].required);
  // No swap past the limit: none in v2, memory+swap equal to memory in v1.
  EXPECT_EQ(m.settings[1].v2_file, "memory.swap.max");
  EXPECT_EQ(m.settings[1].v2_value, "0");
  EXPECT_EQ(m.settings[1].v1_file, "memory.memsw.limit_in_bytes");
  EXPECT_EQ(m.settings[1].v1_value, "536870912");
  EXPECT_FALSE(m.settings[1].required);
  auto p = pids_limit_spec(64);
  EXPECT_EQ(p.settings.at(0).v2_value, "64");
  EXPECT_EQ(p.field, "process.max_pids");
  // cpu.weight 100 is v1's cpu.shares 1024: the two hierarchies' defaults.
  EXPECT_EQ(cpu_weight_spec(100).settings.at(0).v1_value, "1024");
  EXPECT_EQ(cpu_weight_spec(10000).settings.at(0).v1_value, "102400");
  EXPECT_EQ(cpu_weight_spec(1).settings.at(0).v1_value, "10");
  EXPECT_EQ(cpu_weight_spec(1).settings.at(0).v2_value, "1");
}

TEST(Attribute, AnOomKillIsTheMemoryLimitsWhenTheSandboxHasOne) {
  auto d = decisions();
  d.policy.memory_max = 64ull << 20;
  d.memory_by = "cgroup v1 memory.limit_in_bytes";
  auto v = attribute_exit(d, SIGKILL, true);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->mechanism, "memory-limit");
  EXPECT_EQ(v->rule, "process.memory_max: 67108864 (cgroup v1 memory.limit_in_bytes)");
  // A SIGKILL from anyone else is not the limit's.
  EXPECT_FALSE(attribute_exit(d, SIGKILL, false));
  // Audit mode does not lift limits: the kill is still the limit's.
  d.policy.audit_mode = true;
  EXPECT_TRUE(attribute_exit(d, SIGKILL, true));
  // Without a limit the host ran out of memory: no rule of ours.
  EXPECT_FALSE(attribute_exit(decisions(), SIGKILL, true));
  // The RLIMIT_AS fallback kills no one: an OOM kill there is the host's.
  auto r = decisions();
  r.policy.memory_max = 64ull << 20;
  r.memory_by = "RLIMIT_AS";
  EXPECT_FALSE(attribute_exit(r, SIGKILL, true));
}

TEST(Attribute, AForkRefusedWithEagainIsThePidsLimits) {
  auto d = decisions();
  d.policy.max_pids = 16;
  for (long nr : {SYS_clone, SYS_clone3, SYS_fork, SYS_vfork}) {
    auto v = attribute(d, op(nr, EAGAIN));
    ASSERT_TRUE(v) << nr;
    EXPECT_EQ(v->mechanism, "pids-limit");
    EXPECT_EQ(v->rule, "process.max_pids: 16");
  }
  EXPECT_FALSE(attribute(d, op(SYS_read, EAGAIN)));      // not a process-creating call
  EXPECT_FALSE(attribute(decisions(), op(SYS_clone, EAGAIN)));  // no pids limit: RLIMIT_NPROC's, not ours
}

// Issue 11 item 6: a denied path spelt through symlinks is judged where the links lead:
// a chain, a link then "..", links relative to their directory; a loop gives up (the
// kernel refused it with ELOOP); a path without links is itself ("").
TEST(Attribute, PhysicalPathFollowsLinksAsTheKernelDoes) {
  char tmpl[] = "/tmp/agentcage-phys-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  for (const char* d : {"/ws", "/secret", "/secret/deep", "/secret/deep/sub"})
    ASSERT_EQ(mkdir((root + d).c_str(), 0755), 0);
  { std::ofstream(root + "/secret/file") << "x"; }
  ASSERT_EQ(symlink("/secret/file", (root + "/ws/a").c_str()), 0);  // absolute: from the root
  ASSERT_EQ(symlink("a", (root + "/ws/b").c_str()), 0);             // relative: from ws
  ASSERT_EQ(symlink("/secret/deep/sub", (root + "/ws/d").c_str()), 0);
  ASSERT_EQ(symlink("l2", (root + "/ws/l1").c_str()), 0);
  ASSERT_EQ(symlink("l1", (root + "/ws/l2").c_str()), 0);
  EXPECT_EQ(physical_path("/ws/b", root), "/secret/file");
  EXPECT_EQ(physical_path("/ws/./b", root), "/secret/file");
  EXPECT_EQ(physical_path("/ws/d/../file", root), "/secret/deep/file") << "\"..\" after a link leaves its target";
  EXPECT_EQ(physical_path("/ws/d/../../file", root), "/secret/file");
  EXPECT_EQ(physical_path("/ws/l1", root), "") << "a loop";
  EXPECT_EQ(physical_path("/secret/file", root), "") << "no link: the path itself";
  EXPECT_EQ(physical_path("/ws/missing/../x", root), "/ws/x") << "missing from a component on: as spelt";
  EXPECT_EQ(physical_path("relative", root), "");
  std::filesystem::remove_all(root);
}

TEST(MountMask, PathWithin) {
  EXPECT_TRUE(path_within("/a/b", "/a/b"));
  EXPECT_TRUE(path_within("/a/b/c", "/a/b"));
  EXPECT_TRUE(path_within("/a/b/c", "/a/b/"));
  EXPECT_FALSE(path_within("/a/bc", "/a/b"));
  EXPECT_FALSE(path_within("/a", "/a/b"));
  EXPECT_TRUE(path_within("/x", "/"));
}

// A fake host: /lib -> usr/lib, /dev/null a device, /work/.env a file.
std::optional<PathInfo> fake(const std::string& p) {
  PathInfo i;
  i.real = p;
  i.is_dir = true;
  if (p == "/lib") {
    i.is_symlink = true;
    i.link_text = "usr/lib";
    i.real = "/usr/lib";
  } else if (p == "/dev/null" || p == "/dev/ptmx") {
    i.is_dir = false;
    i.is_device = true;
  } else if (p == "/work/.env") {
    i.is_dir = false;
  } else if (p == "/missing") {
    return std::nullopt;
  }
  return i;
}

std::string render(const MountMaskPlan& p) {
  static const char* kinds[] = {"mkdir", "touch", "symlink", "bind", "attr", "proc", "mask_dir", "mask_file", "devtmpfs", "devpts", "shm", "tmp"};
  std::string out;
  for (const auto& op : p.ops) {
    out += kinds[op.kind];
    if (op.kind == ViewOp::setattr) {
      out += std::string(" ") + (op.attr & kMountAttrRdonly ? "ro" : "rw") + (op.attr & kMountAttrNosuid ? ",nosuid" : "") +
             (op.attr & kMountAttrNodev ? ",nodev" : "") + (op.attr & kMountAttrNoexec ? ",noexec" : "");
    }
    out += " " + op.target;
    if (!op.source.empty()) out += " <- " + op.source;
    out += "\n";
  }
  return out;
}

TEST(MountView, PlanShowsOnlyListedTrees) {
  MountViewInput in;
  in.read = {"/etc", "/proc", "/missing"};
  in.exec = {"/usr", "/lib"};
  in.write = {"/work", "/dev/null"};
  in.deny = {"/work/.env", "/work/secrets", "/var/secret"};
  in.cwd = "/work";
  auto p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(render(*p),
            "mkdir /R/etc\nbind /R/etc <- /etc\nattr ro,nosuid,nodev /R/etc\n"
            "mkdir /R/proc\nproc /R/proc\nattr ro /R/proc\n"
            "mkdir /R/usr\nbind /R/usr <- /usr\nattr ro,nosuid,nodev /R/usr\n"
            "bind /R/usr/lib <- /usr/lib\nattr ro,nosuid,nodev /R/usr/lib\n"
            "mkdir /R/work\nbind /R/work <- /work\nattr rw,nosuid,nodev /R/work\n"
            // /dev/null listed: a minimal /dev instead of the host's
            "mkdir /R/dev\ndevtmpfs /R/dev\ntouch /R/dev/null\nbind /R/dev/null <- /dev/null\n"
            "mkdir /R/dev/pts\ndevpts /R/dev/pts\nsymlink /R/dev/ptmx <- pts/ptmx\n"
            "mkdir /R/dev/shm\nshm /R/dev/shm <- mode=1777\nsymlink /R/dev/fd <- /proc/self/fd\n"
            "symlink /R/dev/stdin <- /proc/self/fd/0\nsymlink /R/dev/stdout <- /proc/self/fd/1\n"
            "symlink /R/dev/stderr <- /proc/self/fd/2\nattr ro,nosuid,noexec /R/dev\n"
            "symlink /R/lib <- usr/lib\n"
            "mask_file /R/work/.env <- /E\n"
            "mask_dir /R/work/secrets\n");
  EXPECT_EQ(p->cwd, "/work");
  EXPECT_EQ(p->entries.size(), 2u);  // /var/secret is not in the view: nothing to mask
  EXPECT_EQ(p->empty_file, "/E");
}

TEST(MountView, PrivateTmpUnderneathListedTrees) {
  MountViewInput in;
  in.write = {"/tmp", "/tmp/ws"};
  in.cwd = "/tmp/ws";
  auto p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  // The private tmpfs first, then the workspace bound into it.
  EXPECT_EQ(render(*p), "mkdir /R/tmp\ntmp /R/tmp <- mode=1777\nmkdir /R/tmp/ws\nbind /R/tmp/ws <- /tmp/ws\nattr rw,nosuid,nodev /R/tmp/ws\n");
  EXPECT_EQ(p->cwd, "/tmp/ws");
}

TEST(MountView, VarTmpIsPrivateLikeTmp) {
  MountViewInput in;
  in.write = {"/var/tmp"};
  auto p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(render(*p), "mkdir /R/var\nmkdir /R/var/tmp\ntmp /R/var/tmp <- mode=1777\n");
  in.tmp_size = 1 << 20;  // filesystem.tmp_size bounds each private tmpfs
  p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(render(*p), "mkdir /R/var\nmkdir /R/var/tmp\ntmp /R/var/tmp <- mode=1777,size=1048576\n");
  in.private_tmp = false;  // the host's, bound, only when asked
  p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  EXPECT_NE(render(*p).find("bind /R/var/tmp <- /var/tmp"), std::string::npos) << render(*p);
}

TEST(MountView, HostDevOnlyWithoutMinimalDev) {
  MountViewInput in;
  in.read = {"/dev"};
  in.write = {"/dev/ptmx"};
  in.cwd = "/elsewhere";
  in.minimal_dev = false;
  auto p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  // A device node under a shown tree is not bound again (that would break ptmx).
  EXPECT_EQ(render(*p), "mkdir /R/dev\nbind /R/dev <- /dev\nattr ro,nosuid /R/dev\n");
  EXPECT_EQ(p->cwd, "/");  // not shown: start in /
}

TEST(MountView, MasksOnlyWithoutTheView) {
  MountViewInput in;
  in.private_view = false;
  in.deny = {"/work/.env"};
  auto p = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(render(*p), "mask_file /work/.env <- /E\n");
}

TEST(MountView, RelativePathsAreErrors) {
  MountViewInput in;
  in.deny = {"relative/path"};
  auto m = plan_mount_view(in, fake, "/R", "/E");
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().message().find("filesystem.deny"), std::string::npos);
  MountViewInput w;
  w.write = {"work"};
  m = plan_mount_view(w, fake, "/R", "/E");
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().message().find("filesystem.write"), std::string::npos);
}

// Issue 12 item 3: in audit mode every action that succeeded is judged against the same
// compiled profile as if enforced; what enforcing would refuse is an audit violation
// saying "audit: would deny", with the mechanism and rule that would have refused it.
TEST(Attribution, AuditModeReportsWhatEnforcingWouldHaveDenied) {
  auto d = decisions();
  d.policy.audit_mode = true;
  d.landlock_enforced = false;  // what audit mode prepares: nothing applied
  d.masks_enforced = false;
  auto opened = [](const std::string& path, int flags) {
    v1::Event ev;
    auto* f = ev.mutable_file();
    f->set_op("open");
    f->set_syscall("openat");
    f->set_path(path);
    f->set_path_resolved(true);
    f->set_flags(static_cast<uint32_t>(flags));
    f->set_result(3);
    return ev;
  };
  auto v = attribute_event(opened("/work/.env", O_RDONLY), d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().action(), "audit");
  EXPECT_EQ(v->violation().what(), "audit: would deny open /work/.env");
  EXPECT_EQ(v->violation().mechanism(), "mount-mask");
  EXPECT_EQ(v->violation().rule(), "filesystem.deny: /work/.env");
  EXPECT_EQ(v->violation().file().path(), "/work/.env");
  v = attribute_event(opened("/etc/passwd", O_WRONLY | O_APPEND), d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().mechanism(), "landlock");
  EXPECT_NE(v->violation().rule().find("/etc/passwd needs write_file"), std::string::npos) << v->violation().rule();
  v = attribute_event(opened("/root/.ssh/id_rsa", O_RDONLY), d, false);
  ASSERT_TRUE(v);
  EXPECT_NE(v->violation().rule().find("/root/.ssh/id_rsa needs read_file"), std::string::npos) << v->violation().rule();
  EXPECT_FALSE(attribute_event(opened("/etc/hosts", O_RDONLY), d, false)) << "granted: nothing to report";
  EXPECT_FALSE(attribute_event(opened("/work/src.c", O_RDWR | O_CREAT), d, false));
  EXPECT_FALSE(attribute_event(opened("/", O_RDONLY | O_DIRECTORY), d, false)) << "the view's root is listable";
  EXPECT_FALSE(attribute_event(opened("/root/.ssh/id_rsa", O_PATH), d, false)) << "O_PATH opens no file";
  v1::Event moved;  // a rename inside the write tree (an editor's save): no refer needed
  moved.mutable_file()->set_op("rename");
  moved.mutable_file()->set_syscall("rename");
  moved.mutable_file()->set_path("/work/a.txt~");
  moved.mutable_file()->set_result(0);
  EXPECT_FALSE(attribute_event(moved, d, false));

  auto exec = [](const std::string& filename, const std::string& binary) {
    v1::Event ev;
    ev.mutable_process()->set_binary(binary);
    ev.mutable_exec()->set_filename(filename);
    return ev;
  };
  v = attribute_event(exec("/work/evil.sh", "/usr/bin/dash"), d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().what(), "audit: would deny exec /work/evil.sh");
  EXPECT_EQ(v->violation().rule(), "filesystem.exec: /work/evil.sh is outside the exec paths");
  v = attribute_event(exec("./x", "/work/bin/x"), d, false);  // no cwd: judged by the image mapped
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().what(), "audit: would deny exec ./x (/work/bin/x)");
  EXPECT_FALSE(attribute_event(exec("/usr/bin/true", "/usr/bin/true"), d, false));

  // A syscall in the audit set that went through (the sys_exit program records those with
  // whatever result): what the enforced filter would have refused, and under a kill action.
  auto syscall = [](const std::string& name, long nr, int result) {
    v1::Event ev;
    auto* sc = ev.mutable_syscall();
    sc->set_name(name);
    sc->set_nr(static_cast<uint32_t>(nr));
    sc->set_result(result);
    for (int i = 0; i < 6; ++i) sc->add_args(0);
    return ev;
  };
  v = attribute_event(syscall("ptrace", SYS_ptrace, 0), d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().what(), "audit: would deny syscall ptrace");
  EXPECT_EQ(v->violation().mechanism(), "seccomp");
  EXPECT_EQ(v->violation().rule(), "syscalls.deny: ptrace (builtin)");
  EXPECT_EQ(v->violation().action(), "audit");
  v = attribute_event(syscall("io_uring_setup", SYS_io_uring_setup, 3), d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().what(), "audit: would deny syscall io_uring_setup");
  EXPECT_FALSE(attribute_event(syscall("getpid", SYS_getpid, 7), d, false)) << "not in the deny set";
  auto k = decisions(SeccompAction::kill);
  k.policy.audit_mode = true;
  v = attribute_event(syscall("ptrace", SYS_ptrace, -ESRCH), k, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().rule(), "syscalls.deny: ptrace (builtin); syscalls.action: kill (the process would be killed)");

  // Enforcing, a success is just a success.
  d.policy.audit_mode = false;
  EXPECT_FALSE(attribute_event(opened("/work/.env", O_RDONLY), d, false));
  EXPECT_FALSE(attribute_event(exec("/work/evil.sh", "/usr/bin/dash"), d, false));
}

// Issue 12 item 2: an exec the kernel killed its caller for (actions.exec: kill) is a
// `kill` violation naming the image, the rule and the program that killed; a killed
// refusal the profile does not explain (permission bits, no cwd to resolve) is still one.
TEST(Attribution, AnExecKilledByTheKernelIsAKillNamingTheImage) {
  auto d = decisions();
  auto ev = failed_exec("./evil.sh", "/work");
  ev.mutable_exec()->set_killed(true);
  auto v = attribute_event(ev, d, false);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->violation().action(), "kill");
  EXPECT_EQ(v->violation().mechanism(), "landlock");
  EXPECT_EQ(v->violation().rule(), "filesystem.exec: /work/evil.sh is outside the exec paths");
  EXPECT_EQ(v->violation().what(),
            "exec ./evil.sh (/work/evil.sh): killed by agentcage's sys_exit BPF program (actions.exec: kill)");
  for (const auto& [name, cwd] : std::vector<std::pair<std::string, std::string>>{{"/usr/bin/x", ""}, {"./x", ""}}) {
    auto e = failed_exec(name, cwd);
    e.mutable_exec()->set_killed(true);
    auto k = attribute_event(e, d, false);
    ASSERT_TRUE(k) << name;
    EXPECT_EQ(k->violation().action(), "kill") << name;
    EXPECT_EQ(k->violation().rule(), "actions.exec: kill (exec refused with EACCES)") << name;
    EXPECT_EQ(k->violation().what(), "exec " + name + ": killed by agentcage's sys_exit BPF program (actions.exec: kill)");
  }
}

// Issue 12: an exec Landlock refused is a violation naming the image and filesystem.exec,
// whatever the spelling; the cwd the kernel gave with the record resolves a relative one.
TEST(Attribution, ARefusedExecNamesTheImageAndTheExecRule) {
  auto d = decisions();
  for (const auto& [name, cwd] : std::vector<std::pair<std::string, std::string>>{
           {"./evil.sh", "/work"}, {"sub/../evil.sh", "/work"}, {"/work/./x/../evil.sh", ""}, {"../work/evil.sh", "/etc"}}) {
    auto v = attribute_event(failed_exec(name, cwd), d, false);
    ASSERT_TRUE(v) << name;
    EXPECT_EQ(v->violation().mechanism(), "landlock") << name;
    EXPECT_EQ(v->violation().rule(), "filesystem.exec: /work/evil.sh is outside the exec paths") << name;
    EXPECT_EQ(v->violation().action(), "deny");
    EXPECT_EQ(v->violation().what(), "exec " + name + " (/work/evil.sh)") << "as spelt, then as resolved";
  }
  EXPECT_EQ(attribute_event(failed_exec("/work/evil.sh", ""), d, false)->violation().what(), "exec /work/evil.sh");
  // Inside filesystem.exec, a refusal is not ours (permission bits): no violation.
  EXPECT_FALSE(attribute_event(failed_exec("/usr/bin/x", ""), d, false));
  // A relative name with nothing to resolve it against is judged as spelt: not claimed.
  EXPECT_FALSE(attribute_event(failed_exec("./evil.sh", ""), d, false));
  // The failed-syscall record of the same execve does not count it twice.
  v1::Event sys;
  sys.mutable_syscall()->set_name("execve");
  sys.mutable_syscall()->set_nr(SYS_execve);
  sys.mutable_syscall()->set_error("EACCES");
  EXPECT_FALSE(attribute_event(sys, d, false));
}

}  // namespace
}  // namespace agentcage::core
