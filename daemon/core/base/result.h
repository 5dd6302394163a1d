// SPDX-License-Identifier: Apache-2.0
// Errors are values: Result<T> carries errno, what was being done, an optional hint and
// where it was raised. Messages name the call and the object ("open(/sys/fs/cgroup/x)").
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <source_location>
#include <string>

namespace agentcage::core {

struct Error {
  int code = 0;          // errno value, 0 when not a system error
  std::string context;   // "bpf_map_update_elem(ac_cgroups)"
  std::string hint;      // what to do about it, when the cause is known
  std::source_location where;

  // "context: strerror(code)" and, on its own line, "hint: ...".
  std::string message() const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = Result<void>;

// An error from errno (or an explicit code) with context.
inline std::unexpected<Error> sys_error(std::string context, int code = errno, std::string hint = {},
                                        std::source_location where = std::source_location::current()) {
  return std::unexpected(Error{code, std::move(context), std::move(hint), where});
}

// A non-system error (bad input, missing feature).
inline std::unexpected<Error> error(std::string context, std::string hint = {},
                                    std::source_location where = std::source_location::current()) {
  return std::unexpected(Error{0, std::move(context), std::move(hint), where});
}

inline std::string Error::message() const {
  std::string m = context;
  if (code != 0) {
    m += ": ";
    m += std::strerror(code);
  }
  if (!hint.empty()) {
    m += "\nhint: ";
    m += hint;
  }
  return m;
}

}  // namespace agentcage::core
