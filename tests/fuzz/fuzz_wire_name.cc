// SPDX-License-Identifier: Apache-2.0
// The name check's reader (daemon/core/dns/name_check.h) on arbitrary first bytes of a
// connection from a hostile sandbox. Properties: never a crash or a read past the input;
// a name it returns is only what a DNS name is made of (lower case, [a-z0-9._-], at most
// 253 bytes), so no wildcard entry can match a name a server would route elsewhere; an
// allowed HTTP request rewritten by one_request_only() reads again as the same name, with
// the same request line, exactly one Connection header and it "close"; any prefix of an
// input it decided on is undecided or decided the same way for TLS (the reader waits for
// the whole ClientHello rather than guessing).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/dns/name_check.h"
#include "fuzz_common.h"

using namespace agentcage;
using K = core::WireName::Kind;

namespace {

bool dns_chars(const std::string& n) {
  if (n.size() > 253) return false;
  for (unsigned char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

size_t count_ci(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    bool eq = true;
    for (size_t j = 0; j < needle.size() && eq; ++j)
      eq = std::tolower(static_cast<unsigned char>(hay[i + j])) == needle[j];
    n += eq;
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  auto w = core::wire_name(in);
  fuzz::check(dns_chars(w.name), "a name with bytes no DNS name has: " + w.name);
  fuzz::check(fuzz::valid_utf8(w.error), "an error is not valid UTF-8");
  if (w.kind == K::tls && w.error.empty() && size > 0) {
    auto p = core::wire_name(in.first(size - 1));
    fuzz::check(p.kind == K::incomplete || (p.kind == K::tls && !p.error.empty()) || p.name == w.name,
                "a prefix of a ClientHello was read as another name");
  }
  if (w.kind != K::http || !w.error.empty()) return 0;
  fuzz::check(w.header_end >= 4 && w.header_end <= size, "header_end out of the input");
  auto out = core::one_request_only(in, w);
  auto again = core::wire_name(out);
  fuzz::check(again.kind == K::http && again.error.empty(), "the rewritten request does not read: " + again.error);
  fuzz::check(again.name == w.name, "the rewritten request names another host: " + again.name);
  std::string_view o(reinterpret_cast<const char*>(out.data()), again.header_end);
  std::string_view orig(reinterpret_cast<const char*>(data), size);
  fuzz::check(o.substr(0, o.find("\r\n")) == orig.substr(0, orig.find("\r\n")), "the request line changed");
  fuzz::check(count_ci(o, "\r\nconnection:") == 1, "not exactly one Connection header");
  fuzz::check(o.ends_with("\r\nConnection: close\r\n\r\n"), "the rewritten request does not end asking to close");
  fuzz::check(count_ci(o, "\r\nupgrade:") == 0 && count_ci(o, "\r\nkeep-alive:") == 0, "an upgrade survived");
  return 0;
}
