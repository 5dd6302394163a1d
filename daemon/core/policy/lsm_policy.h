// SPDX-License-Identifier: Apache-2.0
// Deny-by-inode rules for the BPF LSM programs (bpf/lsm.bpf.c): what the user names by
// path, turned into the (sandbox, dev, ino) keys the kernel matches on. Resolving is a
// stat() per path; everything else here is pure and unit-tested.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <agentcage/abi.h>

#include "core/base/result.h"

namespace agentcage::core {

// One rule as the user gave it: a path and what to deny on it.
struct DenyRule {
  std::string path;
  uint32_t deny = AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC;  // enum ac_lsm_deny bits
};

// A rule resolved to the inode it names now, ready for the ac_lsm_inodes map.
struct InodeRule {
  ac_inode_key key{};
  ac_inode_rule rule{};
};

// The kernel's dev_t (MAJOR << 20 | MINOR, what inode->i_sb->s_dev holds) for a stat()
// st_dev, which glibc encodes differently.
uint32_t kernel_dev(dev_t st_dev);

// "deny-path /secret" / "deny-exec /usr/bin/curl": how violations name the rule.
std::string rule_text(const DenyRule& r);

// stat() each path (following symlinks: the target is what an open reaches) and key it
// for `sandbox`. rule_id is the index into `rules`. Two rules on one inode merge their
// deny bits under the first rule's id. A missing path is an error naming it: a deny
// rule that silently matches nothing would be a hole.
// Limits (documented, not hidden): the inode is the one the path names *now*; a file
// replaced later (new inode) is not covered, and if the file is deleted a new file that
// reuses its inode number is denied (fails closed). On file systems whose stat() reports a
// device other than the super block's (btrfs subvolumes), the key does not match; on
// overlayfs stat() reports the real (upper/lower) inode, which the kernel also opens.
// A directory rule denies opening the directory itself, not the files under it.
Result<std::vector<InodeRule>> resolve_deny_rules(uint64_t sandbox, std::span<const DenyRule> rules);

}  // namespace agentcage::core
