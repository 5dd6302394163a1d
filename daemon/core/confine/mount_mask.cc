// SPDX-License-Identifier: Apache-2.0
#include "core/confine/mount_mask.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/base/fs.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

namespace {

#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
constexpr unsigned kAtRecursive = 0x8000;     // AT_RECURSIVE

struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

int set_attr(const char* path, uint64_t attr, bool recursive) {
  MountAttr a{attr, 0, 0, 0};
  if (::syscall(__NR_mount_setattr, AT_FDCWD, path, recursive ? kAtRecursive : 0, &a, sizeof a) != 0) return errno;
  return 0;
}

// The devices a minimal /dev carries (character devices with no host state behind them,
// plus the controlling terminal).
constexpr const char* kSafeDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};

// "/a/b/c" -> "/a", "/a/b" (proper ancestors, outermost first; "/" excluded).
std::vector<std::string> ancestors(const std::string& p) {
  std::vector<std::string> out;
  for (size_t i = 1; i < p.size(); ++i)
    if (p[i] == '/') out.push_back(p.substr(0, i));
  return out;
}

Status check_abs(const std::string& p, const char* field) {
  if (p.empty() || p[0] != '/') return error(std::string(field) + ": \"" + p + "\" is not an absolute path");
  return {};
}

}  // namespace

bool mount_setattr_supported() {
  // Invalid flags: EINVAL when the syscall exists, ENOSYS when it does not.
  long r = ::syscall(__NR_mount_setattr, -1, "", ~0u, nullptr, 0);
  return !(r < 0 && errno == ENOSYS);
}

PathLookup host_path_lookup() {
  return [](const std::string& p) -> std::optional<PathInfo> {
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) return std::nullopt;
    PathInfo info;
    info.is_symlink = S_ISLNK(st.st_mode);
    if (info.is_symlink) {
      char buf[PATH_MAX];
      ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
      if (n > 0) info.link_text.assign(buf, static_cast<size_t>(n));
    }
    char real[PATH_MAX];
    if (!::realpath(p.c_str(), real)) return std::nullopt;  // dangling
    info.real = real;
    struct stat tst{};
    if (::stat(real, &tst) != 0) return std::nullopt;
    info.is_dir = S_ISDIR(tst.st_mode);
    info.is_device = S_ISCHR(tst.st_mode) || S_ISBLK(tst.st_mode);
    return info;
  };
}

namespace {
// A private scratch tmpfs: anyone may create, only the owner remove (like /tmp).
std::string tmpfs_options(uint64_t size) {
  return size ? "mode=1777,size=" + std::to_string(size) : std::string("mode=1777");
}
}  // namespace

Result<MountMaskPlan> plan_mount_view(const MountViewInput& in, const PathLookup& lookup, const std::string& new_root,
                                      const std::string& empty_file) {
  MountMaskPlan plan;
  plan.private_view = in.private_view;
  const std::string root = in.private_view ? new_root : std::string();
  plan.new_root = root;
  std::set<std::string> made;  // targets already created (mkdir/touch/symlink)
  auto mkdirs = [&](const std::string& path_in_view) {
    for (const auto& a : ancestors(path_in_view))
      if (made.insert(a).second) plan.ops.push_back({ViewOp::mkdir, root + a, {}});
  };

  if (in.private_view) {
    // Real path -> writable?, and whether it is a directory / device.
    struct Tree {
      bool rw = false;
      PathInfo info;
    };
    std::map<std::string, Tree> trees;  // ordered: parents before children
    std::vector<std::pair<std::string, std::string>> links;  // (path in view, link text)
    auto add = [&](const std::vector<std::string>& list, bool rw, const char* field) -> Status {
      for (const auto& p : list) {
        if (auto st = check_abs(p, field); !st) return st;
        auto info = lookup(p);
        if (!info) {
          spdlog::debug("view: {} {} does not exist, not shown", field, p);
          continue;
        }
        // Symlinks on the way (/lib -> usr/lib, /var/run -> /run) are recreated in the
        // view so the profile's spelling keeps working; the bind uses the real path.
        for (auto a : ancestors(p)) {
          auto ai = lookup(a);
          if (ai && ai->is_symlink) links.emplace_back(a, ai->link_text);
        }
        if (info->is_symlink) links.emplace_back(p, info->link_text);
        auto& t = trees[info->real];
        t.rw |= rw;
        t.info = *info;
        plan.visible.push_back(info->real);
        if (rw) plan.writable.push_back(info->real);
      }
      return {};
    };
    if (auto st = add(in.read, false, "filesystem.read"); !st) return std::unexpected(st.error());
    if (auto st = add(in.exec, false, "filesystem.exec"); !st) return std::unexpected(st.error());
    if (auto st = add(in.write, true, "filesystem.write"); !st) return std::unexpected(st.error());

    // The minimal /dev replaces every tree at or under /dev.
    bool dev_shown = false;
    if (in.minimal_dev) {
      for (auto it = trees.begin(); it != trees.end();) {
        if (path_within(it->first, "/dev") && it->first != "/") {
          dev_shown = true;
          it = trees.erase(it);
        } else {
          dev_shown |= it->first == "/";
          ++it;
        }
      }
    }
    // Trees replaced by a fresh filesystem (not the host's content): nothing of the host
    // exists beneath them, so mount points there must be created.
    // Every host scratch tree a profile may grant is private in the view, /var/tmp as
    // /tmp: sockets and files there are other users' and the host's (issue 11).
    auto private_scratch = [&](const std::string& r) { return in.private_tmp && (r == "/tmp" || r == "/var/tmp"); };
    auto synthesized = [&](const std::string& r) { return private_scratch(r) || (r == "/proc" && in.fresh_proc); };
    for (const auto& [real, t] : trees) {
      bool under_visible = false;  // beneath a bound host tree: its mount point exists
      for (const auto& [other, _] : trees)
        under_visible |= other != real && path_within(real, other) && !synthesized(other);
      // A device node under a shown tree is already there, and stays writable on a
      // read-only mount; binding it again would break ptmx (it finds devpts via its parent).
      if (t.info.is_device && under_visible) continue;
      if (real == "/proc" && in.fresh_proc) {
        mkdirs(real);
        if (made.insert(real).second) plan.ops.push_back({ViewOp::mkdir, root + real, {}});
        plan.ops.push_back({ViewOp::proc, root + real, {}});
        if (!t.rw) plan.ops.push_back({ViewOp::setattr, root + real, {}, kMountAttrRdonly});
        continue;
      }
      if (private_scratch(real)) {
        mkdirs(real);
        if (!under_visible && made.insert(real).second) plan.ops.push_back({ViewOp::mkdir, root + real, {}});
        plan.ops.push_back({ViewOp::tmp, root + real, tmpfs_options(in.tmp_size), in.tmp_size});
        if (!t.rw) plan.ops.push_back({ViewOp::setattr, root + real, {}, kMountAttrRdonly});
        continue;
      }
      if (real != "/") {
        mkdirs(real);
        if (!under_visible && made.insert(real).second)
          plan.ops.push_back({t.info.is_dir ? ViewOp::mkdir : ViewOp::touch, root + real, {}});
      }
      plan.ops.push_back({ViewOp::bind, root + real, real});
      // nodev everywhere: device nodes are only reachable through the minimal /dev.
      uint64_t attr = kMountAttrNosuid | (in.minimal_dev ? kMountAttrNodev : 0) | (t.rw ? 0 : kMountAttrRdonly);
      plan.ops.push_back({ViewOp::setattr, root + real, {}, attr});
    }
    if (dev_shown) {
      const std::string dev = root + "/dev";
      if (made.insert("/dev").second) plan.ops.push_back({ViewOp::mkdir, dev, {}});
      plan.ops.push_back({ViewOp::dev_tmpfs, dev, {}});
      for (const char* d : kSafeDevices) {
        std::string host = std::string("/dev/") + d;
        auto info = lookup(host);
        if (!info || !info->is_device) continue;
        plan.ops.push_back({ViewOp::touch, dev + "/" + d, {}});
        plan.ops.push_back({ViewOp::bind, dev + "/" + d, host});
      }
      plan.ops.push_back({ViewOp::mkdir, dev + "/pts", {}});
      plan.ops.push_back({ViewOp::devpts, dev + "/pts", {}});
      plan.ops.push_back({ViewOp::symlink, dev + "/ptmx", "pts/ptmx"});
      plan.ops.push_back({ViewOp::mkdir, dev + "/shm", {}});
      plan.ops.push_back({ViewOp::shm, dev + "/shm", tmpfs_options(in.tmp_size), in.tmp_size});
      plan.ops.push_back({ViewOp::symlink, dev + "/fd", "/proc/self/fd"});
      plan.ops.push_back({ViewOp::symlink, dev + "/stdin", "/proc/self/fd/0"});
      plan.ops.push_back({ViewOp::symlink, dev + "/stdout", "/proc/self/fd/1"});
      plan.ops.push_back({ViewOp::symlink, dev + "/stderr", "/proc/self/fd/2"});
      // The /dev tmpfs itself is sealed: nothing new can appear in it.
      plan.ops.push_back({ViewOp::setattr, dev, {}, kMountAttrRdonly | kMountAttrNosuid | kMountAttrNoexec});
      plan.visible.push_back("/dev");
    }
    for (const auto& [at, text] : links) {
      if (made.count(at) || (dev_shown && path_within(at, "/dev"))) continue;
      bool in_tree = false;
      for (const auto& [real, _] : trees) in_tree |= path_within(at, real);
      if (in_tree) continue;  // the bound tree already contains this symlink
      mkdirs(at);
      made.insert(at);
      plan.ops.push_back({ViewOp::symlink, root + at, text});
    }
    char buf[PATH_MAX];
    std::string cwd = in.cwd.empty() ? (::getcwd(buf, sizeof buf) ? buf : "/") : in.cwd;
    plan.cwd = "/";
    for (const auto& v : plan.visible)
      if (path_within(cwd, v)) plan.cwd = cwd;
    if (plan.cwd != cwd) spdlog::warn("working directory {} is not in the profile's filesystem lists; the command starts in /", cwd);
  }

  for (const auto& p : in.deny) {
    if (auto st = check_abs(p, "filesystem.deny"); !st) return std::unexpected(st.error());
    auto info = lookup(p);
    if (!info) {
      spdlog::debug("mask: {} does not exist, nothing to hide", p);
      continue;
    }
    bool shown = !in.private_view;
    for (const auto& v : plan.visible) shown |= path_within(info->real, v);
    if (!shown) continue;  // not in the view at all
    plan.entries.push_back({info->real, info->is_dir});
    if (!info->is_dir) plan.empty_file = empty_file;
    plan.ops.push_back({info->is_dir ? ViewOp::mask_dir : ViewOp::mask_file, root + info->real,
                        info->is_dir ? std::string() : empty_file});
  }
  return plan;
}

Result<MountMaskPlan> prepare_mount_mask(const MountViewInput& in, const std::string& scratch_dir) {
  auto plan = plan_mount_view(in, host_path_lookup(), scratch_dir + "/root", scratch_dir + "/empty-mask");
  if (!plan || !plan->active()) return plan;
  std::string parent = scratch_dir.substr(0, scratch_dir.rfind('/'));
  if (!parent.empty() && ::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir(" + parent + ")");
  if (::mkdir(scratch_dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir(" + scratch_dir + ")");
  if (plan->private_view && ::mkdir(plan->new_root.c_str(), 0755) != 0 && errno != EEXIST)
    return sys_error("mkdir(" + plan->new_root + ")");
  if (!plan->empty_file.empty()) {
    UniqueFd fd(::open(plan->empty_file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0));
    if (!fd) return sys_error("create(" + plan->empty_file + ")");
    // O_CREAT with mode 0 gives 000; fchmod/fchown in case the file existed.
    if (::fchmod(fd.get(), 0) != 0 || ::fchown(fd.get(), 0, 0) != 0) return sys_error("fchmod/fchown(" + plan->empty_file + ")");
  }
  return plan;
}

int mount_mask_apply(const MountMaskPlan& plan, const char** what) {
  if (!plan.active()) return 0;
  *what = "unshare(CLONE_NEWNS) for the filesystem view";
  if (::unshare(CLONE_NEWNS) != 0) return errno;
  *what = "mount(/, MS_REC|MS_SLAVE)";
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return errno;
  if (plan.private_view) {
    *what = "mount(tmpfs) for the view's root";
    if (::mount("agentcage-root", plan.new_root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) return errno;
  }
  constexpr unsigned long kMaskFlags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  for (const auto& op : plan.ops) {
    const char* t = op.target.c_str();
    switch (op.kind) {
      case ViewOp::mkdir:
        *what = "mkdir in the view";
        if (::mkdir(t, 0755) != 0 && errno != EEXIST) return errno;
        break;
      case ViewOp::touch: {
        *what = "create a file mount point in the view";
        int fd = ::open(t, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) return errno;
        if (fd >= 0) ::close(fd);
        break;
      }
      case ViewOp::symlink:
        *what = "symlink in the view";
        if (::symlink(op.source.c_str(), t) != 0 && errno != EEXIST) return errno;
        break;
      case ViewOp::bind:
        *what = "bind mount of a filesystem tree into the view";
        if (::mount(op.source.c_str(), t, nullptr, MS_BIND | MS_REC, nullptr) != 0) return errno;
        break;
      case ViewOp::setattr:
        *what = "mount_setattr(AT_RECURSIVE) on a tree of the view";
        if (int e = set_attr(t, op.attr, true)) return e;
        break;
      case ViewOp::dev_tmpfs:
        *what = "mount(tmpfs) for the minimal /dev";
        if (::mount("agentcage-dev", t, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0) return errno;
        break;
      case ViewOp::devpts:
        // A private devpts instance: the agent's ptys only, never another session's.
        *what = "mount(devpts, newinstance)";
        if (::mount("devpts", t, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0) return errno;
        break;
      case ViewOp::tmp:
      case ViewOp::shm: {
        // Bounded (filesystem.tmp_size): the kernel's default is half of RAM per mount.
        // The options are formatted before fork (op.source), not here: no allocation in
        // the child between clone and exec.
        bool tmp = op.kind == ViewOp::tmp;
        *what = tmp ? "mount(tmpfs) for a private /tmp" : "mount(tmpfs) for /dev/shm";
        if (::mount(tmp ? "agentcage-tmp" : "agentcage-shm", t, "tmpfs", MS_NOSUID | MS_NODEV, op.source.c_str()) != 0)
          return errno;
        break;
      }
      case ViewOp::proc:
        // A procfs of our own: hidepid=invisible hides every process we may not
        // ptrace-inspect, which Landlock makes "everything outside the sandbox". gid= names
        // the group exempt from hiding; its default is root's group, so we name one no
        // agent has ((gid_t)-2).
        *what = "mount(proc, hidepid=invisible)";
        if (::mount("proc", t, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,gid=4294967294") != 0) return errno;
        break;
      case ViewOp::mask_dir:
        *what = "mount(tmpfs) over a filesystem.deny directory";
        if (::mount("agentcage-deny", t, "tmpfs", kMaskFlags, "mode=000,size=4k,nr_inodes=1") != 0) return errno;
        break;
      case ViewOp::mask_file:
        *what = "bind mount over a filesystem.deny file";
        if (::mount(op.source.c_str(), t, nullptr, MS_BIND, nullptr) != 0) return errno;
        // A bind ignores flags on creation; read-only needs a remount.
        *what = "remount read-only of a filesystem.deny file mask";
        if (::mount(nullptr, t, nullptr, MS_REMOUNT | MS_BIND | kMaskFlags, nullptr) != 0) return errno;
        break;
    }
  }
  if (plan.private_view) {
    *what = "mount_setattr(view root, MOUNT_ATTR_RDONLY)";
    if (int e = set_attr(plan.new_root.c_str(), kMountAttrRdonly, false)) return e;
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only
    // the view (the runc idiom: no directory for the old root needed).
    *what = "chdir(view root)";
    if (::chdir(plan.new_root.c_str()) != 0) return errno;
    *what = "pivot_root into the view";
    if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno;
    *what = "umount2(old root, MNT_DETACH)";
    if (::umount2(".", MNT_DETACH) != 0) return errno;
    *what = "chdir(working directory) in the view";
    if (::chdir(plan.cwd.c_str()) != 0 && ::chdir("/") != 0) return errno;
  }
  return 0;
}

}  // namespace agentcage::core
