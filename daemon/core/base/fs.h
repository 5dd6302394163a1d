// SPDX-License-Identifier: Apache-2.0
// Small file helpers every layer uses (procfs, cgroupfs, sysfs).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

// Read a whole (small, procfs/cgroupfs) file.
Result<std::string> read_file(const std::string& path);
Status write_file(const std::string& path, std::string_view data);

// Read an input file a user names (a profile, a seccomp JSON): it must be a regular file
// of at most max_bytes. Opened without blocking and checked before reading, so a FIFO,
// /dev/zero or a sparse file of gigabytes is a clear error, never a stall or an
// allocation of the whole disk.
Result<std::string> read_input_file(const std::string& path, size_t max_bytes);

// Whether `path` is `tree` or lies under it, component-wise ("/etc" holds "/etc/x", not
// "/etcx"). Both absolute and normalised. Pure.
bool path_within(std::string_view path, std::string_view tree);

// The PATH used when the environment has none (execvp's default, minus ".").
inline constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// The first executable `cmd` in $PATH (or kDefaultPath); `cmd` itself when it has a '/';
// empty when none is found. One lookup for the launcher and the exec-list check, so both
// agree on which binary runs.
std::string find_in_path(const std::string& cmd);
// The same lookup in the PATH value `path` (a command's own environment may differ from
// this process's).
std::string find_in_path(const std::string& cmd, std::string_view path);

// The PATH value of an environment given as "NAME=value" entries (the first PATH entry,
// as getenv finds it), or kDefaultPath when it has none.
std::string path_in_env(const std::vector<std::string>& env);

}  // namespace agentcage::core
