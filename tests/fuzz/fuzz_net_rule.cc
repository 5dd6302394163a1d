// SPDX-License-Identifier: Apache-2.0
// The network rule parser (--allow-net / --allow-unix / --net-default, and the same strings
// in a CreateSandbox request) on arbitrary bytes, one flag value per line ("unix X" for
// --allow-unix, "default X" for --net-default). Properties: never a crash; every rule it
// accepts prints back (to_string) to a spelling that parses to the same rule; a policy it
// accepts compiles (net_policy_from_flags promises to validate everything compile() does)
// and re-reads from net_flags_of() to the same flags; every trie key it compiles carries a
// prefix within the sandbox-plus-address bits and no address bits beyond its prefix.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/policy/net_policy.h"
#include "fuzz_common.h"

using namespace agentcage;

namespace {

bool same_flags(const core::NetFlags& a, const core::NetFlags& b) {
  return a.allow == b.allow && a.allow_unix == b.allow_unix && a.default_action == b.default_action;
}

void check_rule(std::string_view spec) {
  auto r = core::parse_net_rule(spec);
  if (!r) {
    fuzz::check(fuzz::valid_utf8(r.error().message()), "an error is not valid UTF-8: " + r.error().message());
    return;
  }
  fuzz::check(r->port_lo <= r->port_hi, "a rule was accepted with its ports reversed");
  auto printed = core::to_string(*r);
  auto again = core::parse_net_rule(printed);
  if (!again) fuzz::fail("the printed rule '" + printed + "' does not parse: " + again.error().message());
  fuzz::check(core::to_string(*again) == printed, "rule does not round-trip: " + printed);
  if (auto c = core::parse_cidr(r->cidr)) fuzz::check(c->prefix >= 0 && c->prefix <= 128, "prefix out of range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  core::NetFlags flags;
  while (!in.empty()) {
    auto nl = in.find('\n');
    auto line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
    if (line.starts_with("unix ")) {
      flags.allow_unix.emplace_back(line.substr(5));
    } else if (line.starts_with("default ")) {
      flags.default_action = std::string(line.substr(8));
    } else {
      check_rule(line);
      flags.allow.emplace_back(line);
    }
  }
  auto policy = core::net_policy_from_flags(flags);
  if (!policy) return 0;
  auto compiled = core::compile(*policy, 0x1234'5678'9abc'def0ull);
  if (!compiled) fuzz::fail("accepted flags do not compile: " + compiled.error().message());
  for (const auto& rule : compiled->rules) {
    const auto& k = rule.key;
    fuzz::check(k.prefixlen >= 64 && k.prefixlen <= 64 + 128, "a trie key's prefix is out of range");
    unsigned bits = k.prefixlen - 64;
    for (unsigned i = bits; i < 128; ++i)
      fuzz::check(!(k.addr[i / 8] & (0x80u >> (i % 8))), "a trie key has address bits past its prefix");
  }
  auto again = core::net_policy_from_flags(core::net_flags_of(*policy));
  if (!again) fuzz::fail("net_flags_of() of an accepted policy does not parse: " + again.error().message());
  fuzz::check(same_flags(core::net_flags_of(*again), core::net_flags_of(*policy)),
              "net_flags_of() does not round-trip");
  return 0;
}
