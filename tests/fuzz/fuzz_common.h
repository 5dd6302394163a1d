// SPDX-License-Identifier: Apache-2.0
// Shared by the libFuzzer harnesses (tests/fuzz/): a failed property aborts with the input's
// finding on stderr, so libFuzzer keeps the input as a crash artifact and CI goes red.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/base/text.h"

namespace agentcage::fuzz {

[[noreturn]] inline void fail(const std::string& what) {
  // Escaped: the finding may quote the very bytes that broke the property.
  std::fprintf(stderr, "property failed: %s\n", core::escape_text(what).c_str());
  std::abort();
}

inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

// Every byte sequence the project prints must be valid UTF-8 (operators' terminals, JSON).
inline bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t n = core::utf8_sequence_length(p + i, s.size() - i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// A private scratch directory per fuzzing process (libFuzzer's -jobs/-workers fork several).
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string t = "/tmp/agentcage-fuzz-XXXXXX";
    if (!mkdtemp(t.data())) fail("mkdtemp failed");
    return t;
  }();
  return dir;
}

}  // namespace agentcage::fuzz
