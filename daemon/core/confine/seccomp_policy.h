// SPDX-License-Identifier: Apache-2.0
// seccomp: the built-in deny set, the profile's rules and OCI/Docker JSON, compiled with
// libseccomp in the parent and exported as classic BPF, so the child installs it with one
// raw seccomp(2) call (libseccomp allocates; the child must not).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

enum class SeccompAction { errno_ret, kill, log };

struct SeccompPolicy {
  bool builtin = true;              // include the built-in deny set (DESIGN.md)
  std::vector<std::string> deny;    // extra syscall names to deny
  std::vector<std::string> allow;   // names removed from the built-in deny set
  SeccompAction action = SeccompAction::errno_ret;
  int errno_value = 1;              // EPERM; used when action == errno_ret
  // An OCI/Docker seccomp profile (JSON text). Compiled as a second filter stacked on the
  // built-in one: the kernel runs both and the strictest verdict wins, so an OCI profile
  // can narrow but never re-open what the built-in set denies.
  std::string oci_json;
  std::string oci_source = "seccomp.json";  // file name used in error messages
};

// One exported filter program.
struct SeccompProgram {
  std::string name;                   // "builtin" or "oci"
  std::vector<sock_filter> insns;
};

// One argument test of a conditional deny: (args[arg] & mask) == value, or != when ne.
struct SeccompArgCond {
  unsigned arg = 0;
  bool ne = false;
  uint64_t mask = ~uint64_t{0};
  uint64_t value = 0;
};

// A syscall the main filter denies, for attribution and status.
struct SeccompDenied {
  std::string name;
  int nr = -1;
  std::string rule;  // "builtin", "profile", or a condition ("cmd == TIOCSTI")
  // When set, the deny applies exactly when all of these hold (attribution tests them
  // on the failed call's arguments); empty for rules matched by `rule` text.
  std::vector<SeccompArgCond> conds;
};

// Socket families a sandbox may create (everything else is denied by the built-in set,
// unless syscalls.allow lists "socket"): unix, inet, inet6, and netlink with the
// NETLINK_ROUTE protocol only. The one statement of that list: the filter is built from it.
bool seccomp_socket_family_allowed(int family, int protocol);

struct CompiledSeccomp {
  std::vector<SeccompProgram> programs;  // install all of them, in order
  std::vector<SeccompDenied> denied;
  uint32_t deny_action = 0;              // SCMP_ACT_* used for the deny set
  bool log = false;                      // some action is LOG: set SECCOMP_FILTER_FLAG_LOG
};

// The built-in deny set by name (some names are unknown to older libseccomp: skipped).
const std::vector<std::string>& seccomp_builtin_deny();

// Compiles the policy. `audit` turns every deny into SCMP_ACT_LOG (learning mode).
Result<CompiledSeccomp> compile_seccomp(const SeccompPolicy& p, bool audit);

// libseccomp's human-readable pseudo-filter of the main and OCI filters, for tests and
// `profile explain`-style output.
Result<std::string> seccomp_pfc(const SeccompPolicy& p, bool audit);

// Child side: install one exported program (raw syscall). Returns 0 or errno.
int seccomp_install(const SeccompProgram& prog, bool log);

}  // namespace agentcage::core
