// SPDX-License-Identifier: Apache-2.0
#include "core/policy/net_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/base/text.h"
#include "core/policy/profile.h"

namespace agentcage::core {
namespace {

Result<uint16_t> parse_port(std::string_view s, std::string_view spec) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > 65535)
    return error(
        fmt::format("network rule '{}': port '{}' is not a number in 0-65535", escape_text(spec), escape_text(s)),
        "write CIDR[:PORT[-PORT]][/tcp|/udp], e.g. 127.0.0.1:8000-8100/tcp or [::1]:443");
  return static_cast<uint16_t>(v);
}

uint8_t proto_bits(NetProto p) {
  switch (p) {
    case NetProto::tcp: return AC_NET_P_TCP;
    case NetProto::udp: return AC_NET_P_UDP;
    case NetProto::any: break;
  }
  return AC_NET_P_ANY;
}

// Merges ranges of the same protocol that overlap or touch, then ranges with the same
// bounds into one protocol mask: the smallest list that allows exactly the same.
std::vector<ac_net_port_range> normalize(std::vector<ac_net_port_range> in) {
  std::vector<ac_net_port_range> out;
  for (uint8_t bit : {uint8_t{AC_NET_P_TCP}, uint8_t{AC_NET_P_UDP}, uint8_t{AC_NET_P_OTHER}}) {
    std::vector<std::pair<uint32_t, uint32_t>> rs;
    for (const auto& r : in)
      if (r.proto & bit) rs.emplace_back(r.lo, r.hi);
    std::sort(rs.begin(), rs.end());
    for (size_t i = 0; i < rs.size();) {
      uint32_t lo = rs[i].first, hi = rs[i].second;
      size_t j = i + 1;
      while (j < rs.size() && rs[j].first <= hi + 1) hi = std::max(hi, rs[j++].second);
      auto same = std::find_if(out.begin(), out.end(), [&](const auto& o) { return o.lo == lo && o.hi == hi; });
      if (same != out.end()) {
        same->proto |= bit;
      } else {
        ac_net_port_range r{};
        r.lo = static_cast<uint16_t>(lo);
        r.hi = static_cast<uint16_t>(hi);
        r.proto = bit;
        out.push_back(r);
      }
      i = j;
    }
  }
  return out;
}

std::string cidr_text(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (c.v4) {
    inet_ntop(AF_INET, c.addr.data() + 12, buf, sizeof buf);
    return fmt::format("{}/{}", buf, c.prefix - 96);
  }
  inet_ntop(AF_INET6, c.addr.data(), buf, sizeof buf);
  return fmt::format("{}/{}", buf, c.prefix);
}

}  // namespace

Result<Cidr> parse_cidr(std::string_view text) {
  const std::string hint = "write an IPv4 or IPv6 address with an optional /prefix: 10.0.0.0/8, 127.0.0.1, ::1, 2001:db8::/32";
  std::string_view addr = text, len;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    len = text.substr(slash + 1);
  }
  Cidr c;
  std::string a(addr);
  int max = 128;
  if (inet_pton(AF_INET, a.c_str(), c.addr.data() + 12) == 1) {
    c.addr[10] = c.addr[11] = 0xff;
    c.v4 = true;
    max = 32;
  } else if (inet_pton(AF_INET6, a.c_str(), c.addr.data()) != 1) {
    return error(fmt::format("CIDR '{}': '{}' is not an IPv4 or IPv6 address", escape_text(text), escape_text(addr)),
                 hint);
  }
  int plen = max;
  if (!len.empty() || text.find('/') != std::string_view::npos) {
    auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), plen);
    if (len.empty() || ec != std::errc() || p != len.data() + len.size() || plen < 0 || plen > max)
      return error(fmt::format("CIDR '{}': prefix length '{}' is not a number in 0-{}", escape_text(text),
                               escape_text(len), max),
                   hint);
  }
  c.prefix = c.v4 ? 96 + plen : plen;
  for (int bit = c.prefix; bit < 128; ++bit)
    if ((c.addr[bit / 8] >> (7 - bit % 8)) & 1) {
      Cidr fixed = c;
      for (int b = c.prefix; b < 128; ++b) fixed.addr[b / 8] &= static_cast<uint8_t>(~(1u << (7 - b % 8)));
      return error(fmt::format("CIDR '{}': address has bits set beyond the /{} prefix", escape_text(text), plen),
                   fmt::format("did you mean {}?", cidr_text(fixed)));
    }
  return c;
}

Result<NetRule> parse_net_rule(std::string_view spec) {
  const std::string hint = "write CIDR[:PORT[-PORT]][/tcp|/udp], e.g. 127.0.0.1:8000-8100/tcp, 10.0.0.0/8, [::1]:443";
  NetRule r;
  std::string_view s = spec;
  if (s.ends_with("/tcp")) {
    r.proto = NetProto::tcp;
    s.remove_suffix(4);
  } else if (s.ends_with("/udp")) {
    r.proto = NetProto::udp;
    s.remove_suffix(4);
  }
  std::string_view cidr = s, ports;
  if (s.starts_with('[')) {
    auto close = s.find(']');
    if (close == std::string_view::npos)
      return error(fmt::format("network rule '{}': missing ']' after the IPv6 address", escape_text(spec)), hint);
    cidr = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || rest.size() == 1)
        return error(fmt::format("network rule '{}': expected ':PORT' after ']', found '{}'", escape_text(spec),
                                 escape_text(rest)),
                     hint);
      ports = rest.substr(1);
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    auto colon = s.find(':');
    cidr = s.substr(0, colon);
    ports = s.substr(colon + 1);
    if (ports.empty()) return error(fmt::format("network rule '{}': empty port after ':'", escape_text(spec)), hint);
  }
  if (cidr.empty()) return error(fmt::format("network rule '{}': no address", escape_text(spec)), hint);
  if (auto c = parse_cidr(cidr); !c) return std::unexpected(c.error());
  r.cidr = std::string(cidr);
  if (!ports.empty()) {
    auto dash = ports.find('-');
    auto lo = parse_port(ports.substr(0, dash), spec);
    if (!lo) return std::unexpected(lo.error());
    auto hi = dash == std::string_view::npos ? lo : parse_port(ports.substr(dash + 1), spec);
    if (!hi) return std::unexpected(hi.error());
    if (*lo > *hi)
      return error(fmt::format("network rule '{}': port range {}-{} is reversed", escape_text(spec), *lo, *hi), hint);
    r.port_lo = *lo;
    r.port_hi = *hi;
  }
  return r;
}

Result<NetAction> parse_net_action(std::string_view text) {
  if (text == "deny") return NetAction::deny;
  if (text == "kill") return NetAction::kill;
  if (text == "audit") return NetAction::audit;
  return error(fmt::format("network action '{}' is not one of deny, kill, audit", escape_text(text)));
}

std::string to_string(NetProto p) {
  switch (p) {
    case NetProto::tcp: return "tcp";
    case NetProto::udp: return "udp";
    case NetProto::any: break;
  }
  return "any";
}

std::string to_string(NetAction a) {
  switch (a) {
    case NetAction::kill: return "kill";
    case NetAction::audit: return "audit";
    case NetAction::deny: break;
  }
  return "deny";
}

std::string to_string(const NetRule& r) {
  bool v6 = r.cidr.find(':') != std::string::npos;
  bool all_ports = r.port_lo == 0 && r.port_hi == 65535;
  std::string ports;
  if (!all_ports) ports = r.port_lo == r.port_hi ? fmt::format(":{}", r.port_lo) : fmt::format(":{}-{}", r.port_lo, r.port_hi);
  std::string proto = r.proto == NetProto::any ? std::string() : fmt::format("/{}", to_string(r.proto));
  if (v6 && !all_ports) return fmt::format("[{}]{}{}", r.cidr, ports, proto);
  return fmt::format("{}{}{}", r.cidr, ports, proto);
}

Result<std::string> parse_domain_pattern(std::string_view text) {
  std::string name = normalize_dns_name(text);
  auto bad = [&](std::string why) {
    return error(fmt::format("'{}' is not a domain name: {}", escape_text(text), why),
                 "write a name such as registry.npmjs.org, or *.example.com for every name below example.com");
  };
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.empty()) return bad("it is empty");
  if (rest.size() > 253) return bad("longer than 253 bytes");
  size_t labels = 0;
  for (size_t start = 0; start <= rest.size();) {
    size_t dot = rest.find('.', start);
    std::string_view label = rest.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return bad("it has an empty label");
    if (label.size() > 63) return bad("a label is longer than 63 bytes");
    for (char c : label)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
        return bad(c == '*' ? "'*' is only allowed as the whole first label (*.example.com)"
                            : fmt::format("'{}' is not allowed (letters, digits, '-', '_')", escape_text({&c, 1})));
    if (label.front() == '-' || label.back() == '-') return bad("a label starts or ends with '-'");
    ++labels;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (name.starts_with("*.") && labels < 2) return bad("a wildcard needs at least two labels after it (*.example.com)");
  return name;
}

std::string normalize_dns_name(std::string_view name) {
  std::string out(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

const DomainRule* match_domain(const std::vector<DomainRule>& rules, std::string_view name) {
  const DomainRule* best = nullptr;
  size_t best_len = 0;
  for (const auto& r : rules) {
    if (r.pattern == name) return &r;
    if (!r.pattern.starts_with("*.")) continue;
    std::string_view suffix = std::string_view(r.pattern).substr(1);  // ".example.com"
    if (name.size() > suffix.size() && name.ends_with(suffix) && suffix.size() > best_len) {
      best = &r;
      best_len = suffix.size();
    }
  }
  return best;
}

Result<DomainRule> parse_allow_domain(std::string_view spec) {
  const char* hint = "write NAME[:PORT[-PORT]], e.g. registry.npmjs.org, *.githubusercontent.com or git.example.com:8443";
  DomainRule r;
  r.proto = NetProto::tcp;
  r.comment = "--allow-domain";
  std::string_view name = spec, ports;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    ports = spec.substr(colon + 1);
    if (ports.empty()) return error(fmt::format("'{}': empty port after ':'", escape_text(spec)), hint);
  }
  auto n = parse_domain_pattern(name);
  if (!n) return std::unexpected(n.error());
  r.pattern = *n;
  uint16_t lo = 443, hi = 443;
  if (!ports.empty()) {
    auto dash = ports.find('-');
    auto l = parse_port(ports.substr(0, dash), spec);
    auto h = dash == std::string_view::npos ? l : parse_port(ports.substr(dash + 1), spec);
    if (!l || !h || *l == 0 || *h == 0)
      return error(fmt::format("'{}': the port is not a number in 1-65535", escape_text(spec)), hint);
    if (*l > *h) return error(fmt::format("'{}': port range {}-{} is reversed", escape_text(spec), *l, *h), hint);
    lo = *l;
    hi = *h;
  }
  r.ports.emplace_back(lo, hi);
  return r;
}

std::string to_flag(const DomainRule& r) {
  if (r.ports.empty()) return r.pattern;
  auto [lo, hi] = r.ports.front();
  return lo == hi ? fmt::format("{}:{}", r.pattern, lo) : fmt::format("{}:{}-{}", r.pattern, lo, hi);
}

std::string to_string(DomainAction a) {
  switch (a) {
    case DomainAction::allow: return "allow";
    case DomainAction::audit: return "audit";
    case DomainAction::deny: return "deny";
    case DomainAction::kill: return "kill";
  }
  return "deny";
}

Result<CompiledNetPolicy> compile(const NetPolicy& policy, uint64_t sandbox_key) {
  if (sandbox_key == 0) return error("network policy: sandbox key 0 is reserved for host-mode records");

  struct Entry {
    Cidr cidr;
    std::vector<ac_net_port_range> own;  // ranges of rules written for exactly this prefix
    std::string first_rule;              // for error messages
    uint32_t block_action = 0;           // a block rule for exactly this prefix (AC_NET_*)
  };
  std::map<std::pair<std::array<uint8_t, 16>, int>, Entry> entries;
  auto add = [&](const Cidr& c, uint16_t lo, uint16_t hi, uint8_t proto, const std::string& origin) -> Status {
    if (lo > hi)
      return error(fmt::format("network rule '{}': port range {}-{} is reversed", escape_text(origin), lo, hi));
    auto& e = entries[{c.addr, c.prefix}];
    if (e.first_rule.empty()) {
      e.cidr = c;
      e.first_rule = origin;
    }
    ac_net_port_range r{};
    r.lo = lo;
    r.hi = hi;
    r.proto = proto;
    e.own.push_back(r);
    return {};
  };
  for (const auto& rule : policy.allow) {
    auto c = parse_cidr(rule.cidr);
    if (!c) return std::unexpected(c.error());
    if (auto st = add(*c, rule.port_lo, rule.port_hi, proto_bits(rule.proto), to_string(rule)); !st)
      return std::unexpected(st.error());
  }
  // With domain rules every port-53 query goes to agentcage's resolver instead (the
  // kernel redirects it before these rules are asked): the resolvers are its upstreams.
  for (const auto& dns : policy.domains.empty() ? policy.dns_resolvers : std::vector<std::string>{}) {
    auto c = parse_cidr(dns);
    if (!c) return error(fmt::format("dns resolver '{}': {}", escape_text(dns), c.error().context), c.error().hint);
    if (auto st = add(*c, 53, 53, AC_NET_P_TCP | AC_NET_P_UDP, "dns resolver " + dns); !st)
      return std::unexpected(st.error());
  }

  for (const auto& b : policy.block) {
    auto c = parse_cidr(b.cidr);
    if (!c) return std::unexpected(c.error());
    auto& e = entries[{c->addr, c->prefix}];
    if (e.first_rule.empty()) {
      e.cidr = *c;
      e.first_rule = "block " + b.cidr;
    }
    e.block_action = b.action == NetAction::kill ? AC_NET_KILL : b.action == NetAction::audit ? AC_NET_AUDIT : AC_NET_DENY;
  }

  CompiledNetPolicy out{};
  // Ancestors of a prefix are found by masking it to each prefix length in use and looking
  // that key up: O(E * lengths * log E) instead of scanning every entry for every entry.
  std::set<int> lengths;
  for (const auto& [k, e] : entries) lengths.insert(k.second);
  auto masked = [](std::array<uint8_t, 16> a, int prefix) {
    for (int b = prefix; b < 128; ++b) a[b / 8] &= static_cast<uint8_t>(~(1u << (7 - b % 8)));
    return a;
  };
  std::vector<const Entry*> anc;
  for (const auto& [k, e] : entries) {
    anc.clear();  // entries strictly containing e, shortest prefix first
    for (int len : lengths) {
      if (len >= e.cidr.prefix) break;
      if (auto it = entries.find({masked(e.cidr.addr, len), len}); it != entries.end()) anc.push_back(&it->second);
    }
    // The innermost block containing this prefix (itself included) cuts inheritance:
    // allow rules wider than it do not reach inside, and its action applies to what
    // this entry does not allow. (Keys are masked: parse_cidr refuses host bits past the
    // prefix, so an ancestor is found by masking this address.)
    const Entry* cut = e.block_action ? &e : nullptr;
    for (auto it = anc.rbegin(); !cut && it != anc.rend(); ++it)
      if ((*it)->block_action) cut = *it;
    // Among rules for the same prefix the strictest wins: a block there drops its allows.
    std::vector<ac_net_port_range> all = e.block_action ? std::vector<ac_net_port_range>{} : e.own;
    for (const Entry* outer : anc)
      if (!cut || outer->cidr.prefix >= cut->cidr.prefix) all.insert(all.end(), outer->own.begin(), outer->own.end());
    auto ranges = normalize(std::move(all));
    if (ranges.size() > AC_NET_MAX_PORT_RANGES)
      return error(fmt::format("network rule '{}': {} separate port ranges apply to {} (at most {})",
                               escape_text(e.first_rule), ranges.size(), cidr_text(e.cidr), AC_NET_MAX_PORT_RANGES),
                   "merge adjacent ports into ranges (8000-8010) or allow a wider range");
    CompiledNetPolicy::Rule r{};
    r.key.prefixlen = AC_NET_KEY_SANDBOX_BITS + static_cast<uint32_t>(e.cidr.prefix);
    r.key.sandbox_lo = static_cast<uint32_t>(sandbox_key);
    r.key.sandbox_hi = static_cast<uint32_t>(sandbox_key >> 32);
    std::memcpy(r.key.addr, e.cidr.addr.data(), 16);
    r.value.count = static_cast<uint32_t>(ranges.size());
    r.value.deny_action = static_cast<uint16_t>(cut ? cut->block_action : 0);
    r.value.prefix = static_cast<uint16_t>(e.cidr.prefix);
    std::copy(ranges.begin(), ranges.end(), r.value.ranges);
    out.rules.push_back(r);
  }

  for (const auto& name : policy.unix_allow) {
    bool abstract = name.starts_with('@');
    if (!abstract && !name.starts_with('/'))
      return error(fmt::format("unix socket '{}': must be an absolute path or @abstract-name", escape_text(name)),
                   "the kernel side matches names exactly as the process gives them");
    if (name.size() < 2 || name.size() > AC_UNIX_PATH_MAX - 1 || name.find('\0') != std::string::npos)
      return error(fmt::format("unix socket '{}': length must be 1-{} bytes without NUL", escape_text(name),
                               AC_UNIX_PATH_MAX - 2));
    ac_net_unix_key k{};
    k.sandbox = sandbox_key;
    std::memcpy(k.path, name.data(), name.size());
    out.unix_allow.push_back(k);
  }

  out.sandbox.default_action = policy.default_action == NetAction::kill    ? AC_NET_KILL
                               : policy.default_action == NetAction::audit ? AC_NET_AUDIT
                                                                           : AC_NET_DENY;
  out.sandbox.flags = (policy.audit_mode ? uint32_t{AC_NET_S_AUDIT} : 0u) | (policy.allow_all_unix ? uint32_t{AC_NET_S_UNIX_ANY} : 0u);
  out.restricts_unix = !policy.allow_all_unix;
  return out;
}

Result<NetPolicy> net_policy_from_flags(const NetFlags& flags, const NetFlagNames& names,
                                        const std::string& resolv_conf) {
  auto named = [](const std::string& name, Error e) {
    e.context = name + ": " + e.context;
    return std::unexpected(std::move(e));
  };
  NetPolicy p;
  for (const auto& spec : flags.allow) {
    auto r = parse_net_rule(spec);
    if (!r) return named(names.allow, r.error());
    p.allow.push_back(*r);
  }
  for (const auto& u : flags.allow_unix) {
    if (u == "*")
      p.allow_all_unix = true;  // also what kernels without the unix hooks need
    else
      p.unix_allow.push_back(u);
  }
  if (!flags.default_action.empty()) {
    auto a = parse_net_action(flags.default_action);
    if (!a) return named(names.default_action, a.error());
    p.default_action = *a;
  }
  for (const auto& spec : flags.allow_domain) {
    auto d = parse_allow_domain(spec);
    if (!d) return named(names.allow_domain, d.error());
    p.domains.push_back(std::move(*d));
  }
  auto add_resolver = [&](const std::string& a) {
    if (std::find(p.dns_resolvers.begin(), p.dns_resolvers.end(), a) == p.dns_resolvers.end())
      p.dns_resolvers.push_back(a);
  };
  for (const auto& d : flags.dns) {
    if (d == "system") {
      for (const auto& s : system_resolvers(resolv_conf)) add_resolver(s);
      continue;
    }
    in6_addr a;
    if (inet_pton(AF_INET, d.c_str(), &a) != 1 && inet_pton(AF_INET6, d.c_str(), &a) != 1)
      return error(fmt::format("{}: '{}' is not an IP address or 'system'", names.dns, escape_text(d)),
                   "give the resolver's address, e.g. 10.0.0.2 or 2001:db8::53, or 'system' for /etc/resolv.conf's");
    add_resolver(d);
  }
  if (!p.domains.empty() && flags.dns.empty())
    for (const auto& s : system_resolvers(resolv_conf)) add_resolver(s);
  if (!p.domains.empty() && p.dns_resolvers.empty())
    return error(fmt::format("{}: no resolver to forward the allowed names to ({} lists no nameserver)",
                             names.allow_domain, resolv_conf),
                 "name one with " + names.dns + " ADDR");
  // Everything compile() checks (unix names, prefix overlaps), now rather than at start.
  if (auto c = compile(p, 1); !c) return std::unexpected(c.error());
  return p;
}

NetFlags net_flags_of(const NetPolicy& policy) {
  NetFlags f;
  for (const auto& r : policy.allow) f.allow.push_back(to_string(r));
  if (policy.allow_all_unix) f.allow_unix.push_back("*");
  for (const auto& u : policy.unix_allow) f.allow_unix.push_back(u);
  f.default_action = to_string(policy.default_action);
  for (const auto& d : policy.domains) f.allow_domain.push_back(to_flag(d));
  // Resolved here: the receiver forwards to the resolvers this side chose.
  f.dns = policy.dns_resolvers;
  return f;
}

}  // namespace agentcage::core
