// SPDX-License-Identifier: Apache-2.0
// The OCI / Docker seccomp JSON parser on arbitrary bytes: never a crash, a hang or an abort
// (deep nesting, number overflow, huge arrays), errors that are valid UTF-8, and what it
// accepts is well formed: argument indexes 0..5, the actions and operators named as
// libseccomp spells them.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/policy/profile_seccomp.h"
#include "fuzz_common.h"

using namespace agentcage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto r = core::parse_oci_seccomp_text(text, "fuzz.json");
  if (!r) {
    fuzz::check(fuzz::valid_utf8(r.error().message()), "an error is not valid UTF-8: " + r.error().message());
    return 0;
  }
  fuzz::check(r->default_action.starts_with("SCMP_ACT_"), "defaultAction accepted as " + r->default_action);
  for (const auto& rule : r->syscalls) {
    fuzz::check(rule.action.starts_with("SCMP_ACT_"), "an action accepted as " + rule.action);
    for (const auto& a : rule.args) {
      fuzz::check(a.index <= 5, "an argument index above 5 was accepted");
      fuzz::check(a.op.starts_with("SCMP_CMP_"), "an operator accepted as " + a.op);
    }
  }
  return 0;
}
