// SPDX-License-Identifier: Apache-2.0
// Landlock: filesystem rights, TCP ports and IPC scoping for the sandboxed child.
//
// Split as the house style asks: compile_landlock() is pure (policy + probed ABI -> the
// rights to handle and one rule per path), unit-tested without a kernel; build_ruleset()
// turns that into a ruleset fd in the parent; the child only calls landlock_restrict_self().
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

// The uapi constants, defined here because Debian 12's <linux/landlock.h> stops at ABI 2
// while the kernels we run on have ABI 7. Values are kernel ABI and never change.
namespace ll {
inline constexpr uint64_t kExecute = 1ull << 0;
inline constexpr uint64_t kWriteFile = 1ull << 1;
inline constexpr uint64_t kReadFile = 1ull << 2;
inline constexpr uint64_t kReadDir = 1ull << 3;
inline constexpr uint64_t kRemoveDir = 1ull << 4;
inline constexpr uint64_t kRemoveFile = 1ull << 5;
inline constexpr uint64_t kMakeChar = 1ull << 6;
inline constexpr uint64_t kMakeDir = 1ull << 7;
inline constexpr uint64_t kMakeReg = 1ull << 8;
inline constexpr uint64_t kMakeSock = 1ull << 9;
inline constexpr uint64_t kMakeFifo = 1ull << 10;
inline constexpr uint64_t kMakeBlock = 1ull << 11;
inline constexpr uint64_t kMakeSym = 1ull << 12;
inline constexpr uint64_t kRefer = 1ull << 13;     // ABI 2
inline constexpr uint64_t kTruncate = 1ull << 14;  // ABI 3
inline constexpr uint64_t kIoctlDev = 1ull << 15;  // ABI 5
inline constexpr uint64_t kNetBindTcp = 1ull << 0;     // ABI 4
inline constexpr uint64_t kNetConnectTcp = 1ull << 1;  // ABI 4
inline constexpr uint64_t kScopeAbstractUnix = 1ull << 0;  // ABI 6
inline constexpr uint64_t kScopeSignal = 1ull << 1;        // ABI 6
}  // namespace ll

// The filesystem rights a given ABI knows about (0 for ABI < 1).
uint64_t landlock_fs_rights_for_abi(int abi);

// Rights granted by each list of the profile's filesystem section.
// read: open files for reading, list directories.
// write: read + create/remove/truncate anything but devices (no REFER: cross-directory
//        links and renames stay denied, which is what stops hard-link smuggling).
// exec: read + execute.
uint64_t landlock_read_rights();
uint64_t landlock_write_rights();
uint64_t landlock_exec_rights();

struct LandlockInput {
  std::vector<std::string> read, write, exec;  // absolute paths, as in the profile
  bool restrict_net = false;                   // handle TCP bind/connect (ABI >= 4)
  std::vector<uint16_t> bind_tcp, connect_tcp; // allowed ports when restrict_net
  bool scope_signal = true;                    // no signals to processes outside (ABI >= 6)
  bool scope_abstract_unix = true;             // no connect to abstract sockets outside (ABI >= 6)
};

struct LandlockPathRule {
  std::string path;
  uint64_t rights = 0;  // already masked to the ABI and, for files, to file rights
};

struct LandlockNetRule {
  uint16_t port = 0;
  uint64_t rights = 0;
};

// What will be enforced: the "enforcement provenance" of the Landlock layer.
struct LandlockPlan {
  int abi = 0;
  uint64_t handled_fs = 0;
  uint64_t handled_net = 0;
  uint64_t scoped = 0;
  std::vector<LandlockPathRule> paths;  // merged: one rule per distinct path
  std::vector<LandlockNetRule> ports;
  // Parts of the input the ABI cannot enforce (e.g. "tcp ports (needs ABI 4)").
  std::vector<std::string> unenforced;
};

// Pure: the plan for `in` on a kernel with Landlock ABI `abi` (>= 1). Rights per path are
// the union of the lists naming it; rights for a regular file are reduced to those that
// apply to files (the kernel rejects directory-only rights on a file rule).
// `is_dir(path)` answers whether a path is a directory (true when unknown).
template <class IsDir>
LandlockPlan compile_landlock(const LandlockInput& in, int abi, IsDir&& is_dir);

// Names of the rights in a mask ("read_file|write_file"); for status output and tests.
std::string landlock_fs_rights_names(uint64_t rights);

// The highest ABI the kernel supports, 0 when Landlock is absent or disabled.
int landlock_probe_abi();

// Parent side: create the ruleset and add the plan's rules. Paths that do not exist are
// skipped (debug log), as a profile lists e.g. /lib64 that some hosts lack.
// Rules for which `defer(path)` is true are left out (the child adds them later).
Result<UniqueFd> landlock_build_ruleset(const LandlockPlan& plan, const std::function<bool(const std::string&)>& defer = {});

// Child side (raw syscalls): add one path rule to a ruleset. 0 or errno; a missing path
// is not an error (0).
int landlock_add_path_rule(int ruleset_fd, const char* path, uint64_t rights);

// Child side (raw syscall, async-signal-safe): enforce the ruleset on this process.
// Requires no_new_privs (or CAP_SYS_ADMIN). Returns 0 or errno.
int landlock_restrict_self(int ruleset_fd);

// --- template implementation ---
uint64_t landlock_file_rights_mask();
template <class IsDir>
LandlockPlan compile_landlock(const LandlockInput& in, int abi, IsDir&& is_dir) {
  LandlockPlan p;
  p.abi = abi;
  p.handled_fs = landlock_fs_rights_for_abi(abi);
  auto add = [&](const std::vector<std::string>& list, uint64_t rights) {
    for (const auto& path : list) {
      uint64_t r = rights & p.handled_fs;
      LandlockPathRule* found = nullptr;
      for (auto& e : p.paths)
        if (e.path == path) found = &e;
      if (!found) {
        p.paths.push_back({path, 0});
        found = &p.paths.back();
      }
      found->rights |= r;
    }
  };
  add(in.read, landlock_read_rights());
  add(in.write, landlock_write_rights());
  add(in.exec, landlock_exec_rights());
  for (auto& e : p.paths)
    if (!is_dir(e.path)) e.rights &= landlock_file_rights_mask();

  if (in.restrict_net) {
    if (abi >= 4) {
      p.handled_net = ll::kNetBindTcp | ll::kNetConnectTcp;
      auto addp = [&](const std::vector<uint16_t>& ports, uint64_t right) {
        for (uint16_t port : ports) {
          LandlockNetRule* found = nullptr;
          for (auto& e : p.ports)
            if (e.port == port) found = &e;
          if (!found) {
            p.ports.push_back({port, 0});
            found = &p.ports.back();
          }
          found->rights |= right;
        }
      };
      addp(in.bind_tcp, ll::kNetBindTcp);
      addp(in.connect_tcp, ll::kNetConnectTcp);
    } else {
      p.unenforced.push_back("tcp bind/connect ports (needs Landlock ABI 4)");
    }
  }
  if (in.scope_signal || in.scope_abstract_unix) {
    if (abi >= 6) {
      if (in.scope_signal) p.scoped |= ll::kScopeSignal;
      if (in.scope_abstract_unix) p.scoped |= ll::kScopeAbstractUnix;
    } else {
      p.unenforced.push_back("signal and abstract unix socket scoping (needs Landlock ABI 6)");
    }
  }
  if (abi < 3) p.unenforced.push_back("truncate control (needs Landlock ABI 3)");
  return p;
}

}  // namespace agentcage::core
