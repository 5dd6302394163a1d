// SPDX-License-Identifier: Apache-2.0
// The profile loader (YAML, extends, OCI seccomp JSON referenced by a profile) on arbitrary
// bytes: it never crashes, hangs or aborts (libFuzzer's -timeout catches inputs that take
// seconds), its diagnostics are valid UTF-8 with no control bytes, and what it accepts
// round-trips: to_yaml() of a resolved profile resolves back to an equal message, as
// profile.h promises (`agentcage profile show` prints exactly that).
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/policy/profile.h"
#include "fuzz_common.h"

using namespace agentcage;

namespace {

std::string write(const std::string& name, const char* data, size_t size) {
  std::string path = fuzz::scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(data, static_cast<std::streamsize>(size));
  return path;
}

void check_diagnostic_text(const std::string& msg) {
  fuzz::check(fuzz::valid_utf8(msg), "a diagnostic is not valid UTF-8: " + msg);
  for (unsigned char c : msg)
    if (c < 0x20 && c != '\n' && c != '\t') fuzz::fail("a diagnostic holds a raw control byte");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const core::ProfileVars vars{"/WORKSPACE", "/home/u", "u", "/tmp"};
  // Only the shipped profiles are on the search path, so `extends: NAME` is exercised
  // against real bases and never against another run's scratch file.
  const std::vector<std::string> search{AGENTCAGE_PROFILE_DIR};
  auto path = write("p.yaml", reinterpret_cast<const char*>(data), size);
  auto r = core::resolve_profile(path, vars, search);
  if (!r) {
    check_diagnostic_text(r.error().message());
    return 0;
  }
  for (const auto& w : r->warnings) check_diagnostic_text(w.str());

  auto yaml = core::to_yaml(r->profile);
  auto again_path = write("again.yaml", yaml.data(), yaml.size());
  auto again = core::resolve_profile(again_path, vars, search);
  if (!again) fuzz::fail("to_yaml() of an accepted profile does not load: " + again.error().message() + "\n" + yaml);
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  if (!d.Compare(r->profile, again->profile))
    fuzz::fail("to_yaml() does not round-trip:\n" + diff + "\n" + yaml);
  return 0;
}
