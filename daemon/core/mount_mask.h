// SPDX-License-Identifier: Apache-2.0
// Mount masks: deny rules inside allowed trees.
//
// Landlock only grants (a rule on /home/u allows everything beneath it), so "allow
// /home/u but not /home/u/.ssh" cannot be expressed with it. The child gets a private mount
// namespace in which each denied path is covered: a directory by an empty read-only tmpfs
// with mode 000, a file by a read-only bind of an empty mode-000 root-owned file. Once the
// agent has lost CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, opening them fails with EACCES; it
// cannot remove the masks because it has no CAP_SYS_ADMIN, the mount family is in the
// seccomp deny set, and Landlock forbids mount changes in a restricted domain.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace agentcage::core {

struct MaskEntry {
  std::string path;
  bool dir = false;
};

struct MountMaskPlan {
  std::vector<MaskEntry> entries;
  std::string empty_file;  // source of file masks (mode 000, root-owned, empty)
  // Read-only view: every mount read-only except binds of `writable`. Landlock has no
  // right for chmod, chown, utimes or xattrs, so without this a root agent could chmod
  // any root-owned file outside its write paths; on a read-only mount those get EROFS.
  bool readonly_view = false;
  std::vector<std::string> writable;  // existing write paths, re-bound read-write
  std::string cwd;                    // re-entered after the binds so it is not the old mount
  bool active() const { return readonly_view || !entries.empty(); }
};

// Parent side: stat the deny paths (missing ones are skipped: there is nothing to hide;
// a debug line says so) and create `empty_file` under `scratch_dir` (made 0700).
// `writable` (with readonly_view) lists the policy's write paths; missing ones are skipped.
Result<MountMaskPlan> prepare_mount_mask(const std::vector<std::string>& deny, const std::string& scratch_dir,
                                         bool readonly_view, const std::vector<std::string>& writable);

// Whether mount_setattr(2) exists (Linux 5.12+), which the read-only view needs.
bool mount_setattr_supported();

// True when `path` is `mask` or beneath it (component-wise: /a/bc is not beneath /a/b).
bool path_within(std::string_view path, std::string_view mask);

// Child side, as root before capabilities are dropped: unshare the mount namespace, make
// every mount a slave (nothing we mount leaks to the host), mount the masks.
// Returns 0 or errno; `what` names the failing step.
int mount_mask_apply(const MountMaskPlan& plan, const char** what);

}  // namespace agentcage::core
