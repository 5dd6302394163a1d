// SPDX-License-Identifier: Apache-2.0
#include "core/confine/landlock.h"

#include <fcntl.h>
#include <cstddef>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace agentcage::core {
namespace {

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

// struct landlock_ruleset_attr as of ABI 6; the kernel accepts a prefix of it, so we pass
// only as many bytes as the fields we use need (older kernels reject unknown non-zero tail).
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

struct NetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
};

constexpr int kRulePathBeneath = 1;
constexpr int kRuleNetPort = 2;
constexpr uint32_t kCreateRulesetVersion = 1u << 0;

}  // namespace

uint64_t landlock_fs_rights_for_abi(int abi) {
  if (abi < 1) return 0;
  uint64_t r = (ll::kMakeSym << 1) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) r |= ll::kRefer;
  if (abi >= 3) r |= ll::kTruncate;
  if (abi >= 5) r |= ll::kIoctlDev;
  return r;
}

uint64_t landlock_file_rights_mask() {
  return ll::kExecute | ll::kWriteFile | ll::kReadFile | ll::kTruncate | ll::kIoctlDev;
}

uint64_t landlock_read_rights() { return ll::kReadFile | ll::kReadDir; }

uint64_t landlock_write_rights() {
  // IOCTL_DEV is granted with write so terminals and /dev/null-like devices listed as
  // writable keep working (ioctls on regular files are never restricted by it).
  return landlock_read_rights() | ll::kWriteFile | ll::kRemoveDir | ll::kRemoveFile | ll::kMakeDir |
         ll::kMakeReg | ll::kMakeSock | ll::kMakeFifo | ll::kMakeSym | ll::kTruncate | ll::kIoctlDev;
}

uint64_t landlock_exec_rights() { return landlock_read_rights() | ll::kExecute; }

std::string landlock_fs_rights_names(uint64_t rights) {
  static constexpr const char* kNames[] = {"execute",   "write_file", "read_file", "read_dir",
                                           "remove_dir", "remove_file", "make_char", "make_dir",
                                           "make_reg",  "make_sock",  "make_fifo", "make_block",
                                           "make_sym",  "refer",      "truncate",  "ioctl_dev"};
  std::string out;
  for (int i = 0; i < 16; ++i)
    if (rights & (1ull << i)) {
      if (!out.empty()) out += '|';
      out += kNames[i];
    }
  return out;
}

int landlock_probe_abi() {
  long abi = ::syscall(__NR_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

Result<UniqueFd> landlock_build_ruleset(const LandlockPlan& plan, const std::function<bool(const std::string&)>& defer) {
  RulesetAttr attr{plan.handled_fs, plan.handled_net, plan.scoped};
  size_t size = plan.abi >= 6 ? sizeof attr : plan.abi >= 4 ? offsetof(RulesetAttr, scoped)
                                                            : offsetof(RulesetAttr, handled_access_net);
  UniqueFd rs(static_cast<int>(::syscall(__NR_landlock_create_ruleset, &attr, size, 0)));
  if (!rs) return sys_error("landlock_create_ruleset", errno, "the kernel needs Landlock enabled (lsm=...,landlock)");
  for (const auto& r : plan.paths) {
    if (r.rights == 0 || (defer && defer(r.path))) continue;
    UniqueFd pfd(::open(r.path.c_str(), O_PATH | O_CLOEXEC));
    if (!pfd) {
      if (errno == ENOENT || errno == ENOTDIR) {
        spdlog::debug("landlock: skipping rule for missing path {}", r.path);
        continue;
      }
      return sys_error("open(" + r.path + ") for a Landlock rule");
    }
    PathBeneathAttr pb{r.rights, pfd.get()};
    if (::syscall(__NR_landlock_add_rule, rs.get(), kRulePathBeneath, &pb, 0) != 0)
      return sys_error("landlock_add_rule(" + r.path + ", " + landlock_fs_rights_names(r.rights) + ")");
  }
  for (const auto& r : plan.ports) {
    NetPortAttr np{r.rights, r.port};
    if (::syscall(__NR_landlock_add_rule, rs.get(), kRuleNetPort, &np, 0) != 0)
      return sys_error("landlock_add_rule(tcp port " + std::to_string(r.port) + ")");
  }
  return rs;
}

int landlock_add_path_rule(int ruleset_fd, const char* path, uint64_t rights) {
  int fd = ::open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : errno;
  PathBeneathAttr pb{rights, fd};
  int e = ::syscall(__NR_landlock_add_rule, ruleset_fd, kRulePathBeneath, &pb, 0) == 0 ? 0 : errno;
  ::close(fd);
  return e;
}

int landlock_restrict_self(int ruleset_fd) {
  if (::syscall(__NR_landlock_restrict_self, ruleset_fd, 0) != 0) return errno;
  return 0;
}

}  // namespace agentcage::core
