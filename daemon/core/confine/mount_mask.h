// SPDX-License-Identifier: Apache-2.0
// The child's filesystem view: a private root that shows only the profile's trees, and
// masks over denied paths inside them.
//
// Landlock only grants (a rule on /home/u allows everything beneath it), so "allow
// /home/u but not /home/u/.ssh" cannot be expressed with it; and it has no rights for
// chmod, chown, utimes, xattrs or connecting to a named unix socket, which a root-started
// agent would otherwise get wherever DAC lets root through (/run/docker.sock!). So the
// child gets a private mount namespace whose root is a fresh tmpfs holding bind mounts of
// the read/exec trees (read-only) and write trees (read-write), a fresh procfs with
// hidepid=invisible (other processes' /proc entries disappear once Landlock forbids
// ptrace-style access to them), and each denied path covered: a directory by an empty
// read-only tmpfs with mode 000, a file by a read-only bind of an empty mode-000 root-owned
// file. Unlisted paths do not exist; masks are unreadable once the agent has lost
// CAP_DAC_OVERRIDE; nothing can be unmounted: no CAP_SYS_ADMIN, the mount family is in the
// seccomp deny set, and Landlock forbids mount changes in a restricted domain.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/base/fs.h"
#include "core/base/result.h"

namespace agentcage::core {

struct MaskEntry {
  std::string path;  // as the sandbox sees it (host realpath; the view keeps host paths)
  bool dir = false;
};

// MOUNT_ATTR_* (uapi values) used on the view's mounts.
inline constexpr uint64_t kMountAttrRdonly = 0x1, kMountAttrNosuid = 0x2, kMountAttrNodev = 0x4, kMountAttrNoexec = 0x8;

// One step of building the view, executed in the child in order.
struct ViewOp {
  // setattr: mount_setattr(AT_RECURSIVE) setting `attr`; dev_tmpfs/devpts/shm build the
  // minimal /dev.
  enum Kind { mkdir, touch, symlink, bind, setattr, proc, mask_dir, mask_file, dev_tmpfs, devpts, shm, tmp };
  Kind kind;
  std::string target;  // absolute path inside the new root (already prefixed)
  std::string source;  // host path for bind / mask_file, link text for symlink
  uint64_t attr = 0;   // for setattr; for tmp and shm: the size in bytes (0: the kernel's default)
};

struct MountMaskPlan {
  std::vector<MaskEntry> entries;   // deny masks, for attribution and status
  std::string empty_file;           // source of file masks (mode 000, root-owned, empty)
  bool private_view = false;
  std::string new_root;             // host directory the tmpfs root is mounted on
  std::vector<ViewOp> ops;          // view construction and masks
  std::vector<std::string> visible; // trees visible in the view (host realpaths)
  std::vector<std::string> writable;
  std::string cwd = "/";            // where the child continues after pivot_root
  bool active() const { return private_view || !entries.empty(); }
};

// What the planner needs to know about a host path (lstat + readlink + realpath).
struct PathInfo {
  bool is_dir = false;
  bool is_symlink = false;
  bool is_device = false;
  std::string link_text;  // when is_symlink
  std::string real;       // realpath
};
using PathLookup = std::function<std::optional<PathInfo>(const std::string&)>;
PathLookup host_path_lookup();

struct MountViewInput {
  std::vector<std::string> read, write, exec, deny;  // absolute paths
  bool private_view = true;
  bool fresh_proc = true;   // a new procfs with hidepid=invisible instead of a bind of /proc
  // When /dev (or anything under it) is shown: a fresh /dev with only null, zero, full,
  // random, urandom, tty, a private devpts and /dev/shm, instead of the host's /dev. A root
  // agent with the host's /dev could read /dev/sda (root owns it; Landlock's read right on
  // /dev cannot tell disks from /dev/null) or another session's /dev/pts/N. Every other
  // tree is bound nodev, so device nodes elsewhere are inert too.
  bool minimal_dev = true;
  // When /tmp is listed: a private, empty tmpfs instead of the host's /tmp, whose unix
  // sockets (root's tmux server, X11, ssh-agent) would hand a root agent the host.
  bool private_tmp = true;
  uint64_t tmp_size = 0;    // bytes per private tmpfs (/tmp, /var/tmp, /dev/shm); 0: the kernel's default
  std::string cwd;          // the child's working directory
};

// Pure (given `lookup`): the ordered ops. Missing paths are skipped (nothing to show or
// hide). `new_root` and `empty_file` are where prepare puts them.
Result<MountMaskPlan> plan_mount_view(const MountViewInput& in, const PathLookup& lookup, const std::string& new_root,
                                      const std::string& empty_file);

// Parent side: plan against the host and create `scratch_dir` (0700) with the new-root
// directory and, when a file is masked, the empty mask file.
Result<MountMaskPlan> prepare_mount_mask(const MountViewInput& in, const std::string& scratch_dir);

// Whether mount_setattr(2) exists (Linux 5.12+): recursive read-only binds need it.
bool mount_setattr_supported();

// Child side, as root before capabilities are dropped: unshare the mount namespace, make
// every mount a slave (nothing we mount leaks to the host), run the ops, pivot_root into
// the view. Returns 0 or errno; `what` names the failing step.
int mount_mask_apply(const MountMaskPlan& plan, const char** what);

}  // namespace agentcage::core
