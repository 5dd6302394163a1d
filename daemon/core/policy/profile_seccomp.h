// SPDX-License-Identifier: Apache-2.0
// OCI / Docker seccomp profiles (the JSON that `docker run --security-opt seccomp=FILE` and
// runc take), parsed and checked so a profile's `syscalls.seccomp_json` fails at load time,
// not when the sandbox starts. Applying the rules is the seccomp layer's job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

struct OciSeccompArg {
  uint32_t index = 0;       // syscall argument 0..5
  uint64_t value = 0;
  uint64_t value_two = 0;   // mask for SCMP_CMP_MASKED_EQ
  std::string op;           // SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ, ...
};

struct OciSeccompRule {
  std::vector<std::string> names;          // only names libseccomp knows (see unknown_syscalls)
  std::string action;                      // SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, ...
  std::optional<uint32_t> errno_ret;
  std::vector<OciSeccompArg> args;
  // Docker's conditions: the rule applies only with/without these capabilities/arches.
  std::vector<std::string> include_caps, exclude_caps, include_arches, exclude_arches;
  std::string min_kernel;
};

struct OciSeccomp {
  std::string default_action;
  std::optional<uint32_t> default_errno_ret;
  std::vector<std::string> architectures;  // SCMP_ARCH_X86_64, ... (those libseccomp knows)
  // SCMP_ARCH_* names this libseccomp does not know (newer than it): skipped and reported.
  std::vector<std::string> unknown_architectures;
  std::vector<OciSeccompRule> syscalls;
  // Names this libseccomp does not know (newer than it): skipped, as runc does, and reported.
  std::vector<std::string> unknown_syscalls;
};

// A seccomp JSON is read whole: at most this much (Docker's default profile is ~20 KB).
inline constexpr size_t kMaxSeccompJsonBytes = 4 << 20;

// Errors name the file and, for JSON syntax, line:col; for bad values the JSON path
// ("syscalls[3].action").
Result<OciSeccomp> parse_oci_seccomp(const std::string& path);
Result<OciSeccomp> parse_oci_seccomp_text(const std::string& text, const std::string& path);

}  // namespace agentcage::core
