// SPDX-License-Identifier: Apache-2.0
#include "core/policy/lsm_policy.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fmt/format.h>

namespace agentcage::core {

uint32_t kernel_dev(dev_t st_dev) {
  // include/linux/kdev_t.h: MKDEV(ma, mi) = ma << MINORBITS | mi, MINORBITS = 20.
  return static_cast<uint32_t>((major(st_dev) << 20) | (minor(st_dev) & 0xfffff));
}

std::string rule_text(const DenyRule& r) {
  const char* kind = (r.deny & AC_LSM_DENY_OPEN) ? "deny-path" : "deny-exec";
  return fmt::format("{} {}", kind, r.path);
}

Result<std::vector<InodeRule>> resolve_deny_rules(uint64_t sandbox, std::span<const DenyRule> rules) {
  std::vector<InodeRule> out;
  for (size_t i = 0; i < rules.size(); ++i) {
    const auto& r = rules[i];
    if (r.path.empty() || r.path[0] != '/')
      return error(fmt::format("{}: the path must be absolute", rule_text(r)));
    if (r.deny == 0 || (r.deny & ~(AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC)) != 0)
      return error(fmt::format("{}: invalid deny bits {:#x}", rule_text(r), r.deny));
    struct stat st{};
    if (::stat(r.path.c_str(), &st) != 0)
      return sys_error(fmt::format("{}: stat({})", rule_text(r), r.path), errno,
                       "a deny rule must name an existing file: the kernel matches its inode");
    InodeRule ir;
    ir.key.sandbox = sandbox;
    ir.key.ino = st.st_ino;
    ir.key.dev = kernel_dev(st.st_dev);
    ir.rule.rule_id = static_cast<uint32_t>(i);
    ir.rule.deny = r.deny;
    bool merged = false;
    for (auto& o : out) {
      if (o.key.ino == ir.key.ino && o.key.dev == ir.key.dev) {
        o.rule.deny |= ir.rule.deny;
        merged = true;
      }
    }
    if (!merged) out.push_back(ir);
  }
  return out;
}

}  // namespace agentcage::core
