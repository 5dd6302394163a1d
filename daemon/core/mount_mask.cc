// SPDX-License-Identifier: Apache-2.0
#include "core/mount_mask.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "core/unique_fd.h"

namespace agentcage::core {

bool path_within(std::string_view path, std::string_view mask) {
  while (mask.size() > 1 && mask.back() == '/') mask.remove_suffix(1);
  if (path.size() < mask.size() || path.substr(0, mask.size()) != mask) return false;
  return path.size() == mask.size() || mask == "/" || path[mask.size()] == '/';
}

namespace {

#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
constexpr uint64_t kAttrRdonly = 0x00000001;  // MOUNT_ATTR_RDONLY
constexpr unsigned kAtRecursive = 0x8000;     // AT_RECURSIVE

struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

int set_readonly(const char* path, bool ro) {
  MountAttr a{ro ? kAttrRdonly : 0, ro ? 0 : kAttrRdonly, 0, 0};
  if (::syscall(__NR_mount_setattr, AT_FDCWD, path, kAtRecursive, &a, sizeof a) != 0) return errno;
  return 0;
}

}  // namespace

bool mount_setattr_supported() {
  // Invalid flags: EINVAL when the syscall exists, ENOSYS when it does not.
  long r = ::syscall(__NR_mount_setattr, -1, "", ~0u, nullptr, 0);
  return !(r < 0 && errno == ENOSYS);
}

Result<MountMaskPlan> prepare_mount_mask(const std::vector<std::string>& deny, const std::string& scratch_dir,
                                         bool readonly_view, const std::vector<std::string>& writable) {
  MountMaskPlan plan;
  plan.readonly_view = readonly_view;
  if (readonly_view) {
    for (const auto& w : writable) {
      if (w.empty() || w[0] != '/') return error("filesystem.write: \"" + w + "\" is not an absolute path");
      struct stat st{};
      if (::stat(w.c_str(), &st) != 0) {
        spdlog::debug("read-only view: write path {} does not exist, skipped", w);
        continue;
      }
      // Device nodes stay writable on a read-only mount, and a bind of one breaks
      // lookups relative to it (ptmx finds its devpts instance through its parent).
      if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) continue;
      plan.writable.push_back(w);
    }
    char buf[4096];
    if (::getcwd(buf, sizeof buf)) plan.cwd = buf;
  }
  for (const auto& p : deny) {
    if (p.empty() || p[0] != '/') return error("filesystem.deny: \"" + p + "\" is not an absolute path");
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        spdlog::debug("mount mask: {} does not exist, nothing to hide", p);
        continue;
      }
      return sys_error("stat(" + p + ") for filesystem.deny");
    }
    plan.entries.push_back({p, S_ISDIR(st.st_mode)});
  }
  bool need_file = false;
  for (const auto& e : plan.entries) need_file |= !e.dir;
  if (!need_file) return plan;
  if (::mkdir(scratch_dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir(" + scratch_dir + ")");
  plan.empty_file = scratch_dir + "/empty-mask";
  UniqueFd fd(::open(plan.empty_file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0));
  if (!fd) return sys_error("create(" + plan.empty_file + ")");
  // O_CREAT with mode 0 already gives 000; fchmod in case the file existed.
  if (::fchmod(fd.get(), 0) != 0 || ::fchown(fd.get(), 0, 0) != 0) return sys_error("fchmod/fchown(" + plan.empty_file + ")");
  return plan;
}

int mount_mask_apply(const MountMaskPlan& plan, const char** what) {
  if (!plan.active()) return 0;
  *what = "unshare(CLONE_NEWNS) for the filesystem view";
  if (::unshare(CLONE_NEWNS) != 0) return errno;
  *what = "mount(/, MS_REC|MS_SLAVE)";
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return errno;
  if (plan.readonly_view) {
    *what = "mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY)";
    if (int e = set_readonly("/", true)) return e;
    for (const auto& w : plan.writable) {
      *what = "bind mount of a filesystem.write path";
      if (::mount(w.c_str(), w.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) return errno;
      *what = "mount_setattr(write path, clear MOUNT_ATTR_RDONLY)";
      if (int e = set_readonly(w.c_str(), false)) return e;
    }
    // Our cwd still points into the mount that the bind just covered.
    *what = "chdir(cwd) after the read-only view";
    if (!plan.cwd.empty() && ::chdir(plan.cwd.c_str()) != 0) return errno;
  }
  constexpr unsigned long kFlags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  for (const auto& e : plan.entries) {
    if (e.dir) {
      *what = "mount(tmpfs) over a filesystem.deny directory";
      if (::mount("agentcage-deny", e.path.c_str(), "tmpfs", kFlags, "mode=000,size=4k,nr_inodes=1") != 0) return errno;
    } else {
      *what = "bind mount over a filesystem.deny file";
      if (::mount(plan.empty_file.c_str(), e.path.c_str(), nullptr, MS_BIND, nullptr) != 0) return errno;
      // A bind mount ignores flags on creation; read-only needs a remount.
      *what = "remount read-only of a filesystem.deny file mask";
      if (::mount(nullptr, e.path.c_str(), nullptr, MS_REMOUNT | MS_BIND | kFlags, nullptr) != 0) return errno;
    }
  }
  return 0;
}

}  // namespace agentcage::core
