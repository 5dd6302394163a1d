// SPDX-License-Identifier: Apache-2.0
// Small pure helpers over profile values, shared by validation and the policy compiler.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "core/profile.h"

namespace agentcage::core {
namespace {

std::optional<uint32_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  uint32_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
  auto fail = [&](std::string msg) -> std::optional<Cidr> {
    if (why) *why = std::move(msg);
    return std::nullopt;
  };
  std::string s(text);
  std::string addr = s, plen;
  if (size_t slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    plen = s.substr(slash + 1);
  }
  Cidr c;
  int max;
  if (inet_pton(AF_INET, addr.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.addr.data()) == 1) {
    c.family = AF_INET6;
    max = 128;
  } else {
    return fail(fmt::format("'{}' is not a CIDR: '{}' is not an IPv4 or IPv6 address", s, addr));
  }
  if (s.find('/') == std::string::npos) {
    c.prefix = static_cast<uint8_t>(max);
    return c;
  }
  auto n = parse_decimal(plen);
  if (!n || *n > static_cast<uint32_t>(max))
    return fail(fmt::format("'{}' is not a CIDR: prefix length '{}' must be 0-{}", s, plen, max));
  c.prefix = static_cast<uint8_t>(*n);
  for (int bit = c.prefix; bit < max; ++bit)
    if (c.addr[bit / 8] & (0x80 >> (bit % 8))) {
      // Normalising silently would widen or shift what the author thought they wrote.
      Cidr fixed = c;
      for (int b = c.prefix; b < max; ++b) fixed.addr[b / 8] &= static_cast<uint8_t>(~(0x80 >> (b % 8)));
      char buf[INET6_ADDRSTRLEN];
      inet_ntop(c.family, fixed.addr.data(), buf, sizeof buf);
      return fail(fmt::format("'{}' has bits set after the /{} prefix; did you mean {}/{}?", s, c.prefix, buf, c.prefix));
    }
  return c;
}

std::vector<std::string> system_resolvers(const std::string& resolv_conf) {
  std::vector<std::string> out;
  std::ifstream in(resolv_conf);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key, value;
    if (ls >> key >> value && key == "nameserver") {
      in6_addr a;
      // Link-local v6 resolvers carry a "%iface" zone; keep the address, drop the zone.
      std::string bare = value.substr(0, value.find('%'));
      if (inet_pton(AF_INET, bare.c_str(), &a) == 1 || inet_pton(AF_INET6, bare.c_str(), &a) == 1) out.push_back(bare);
    }
  }
  return out;
}

v1::Profile::Action effective_action(const v1::Profile& profile, v1::Profile::Action action) {
  if (profile.mode() == v1::Profile::MODE_AUDIT && (action == v1::Profile::ACTION_DENY || action == v1::Profile::ACTION_KILL))
    return v1::Profile::ACTION_AUDIT;
  return action;
}

v1::Profile::SyscallAction effective_syscall_action(const v1::Profile& profile) {
  if (profile.mode() == v1::Profile::MODE_AUDIT) return v1::Profile::SYSCALL_ACTION_LOG;
  return profile.syscalls().action();
}

std::vector<std::string> dns_servers(const v1::Profile& profile, const std::string& resolv_conf) {
  std::vector<std::string> out;
  auto add = [&](const std::string& s) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  };
  for (const auto& d : profile.network().dns()) {
    if (d == "system") {
      for (const auto& s : system_resolvers(resolv_conf)) add(s);
    } else {
      add(d);
    }
  }
  return out;
}

std::optional<int> errno_from_name(std::string_view name) {
  static const std::map<std::string, int, std::less<>> names = [] {
    std::map<std::string, int, std::less<>> m;
    for (int e = 1; e < 4096; ++e)
      if (const char* n = strerrorname_np(e)) m.emplace(n, e);
    return m;
  }();
  auto it = names.find(name);
  if (it == names.end()) return std::nullopt;
  return it->second;
}

}  // namespace agentcage::core
