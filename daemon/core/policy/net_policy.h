// SPDX-License-Identifier: Apache-2.0
// Network policy of one sandbox, and its compilation into the BPF map entries that
// bpf/net.bpf.c enforces. Pure: no kernel access here (BpfMonitor writes the entries).
//
// Semantics (enforced by the cgroup sock_addr programs):
//  - A sandbox without a NetPolicy is unrestricted (observed only).
//  - With one, connect(2), sendto/sendmsg(2) to an address (unconnected UDP) and bind(2)
//    to a non-zero port are allowed only when an `allow` rule matches address, port and
//    protocol. bind to port 0 (ephemeral) is always allowed.
//  - IPv4 is matched as its v4-mapped IPv6 form ::ffff:a.b.c.d, so a rule for 10.0.0.0/8
//    also covers a v4-mapped IPv6 connect to ::ffff:10.1.2.3, and an IPv6 rule that
//    contains ::ffff:0:0/96 (::/0 for one) covers IPv4 too.
//  - Loopback is not special: list 127.0.0.0/8 or ::1 to reach local services. Other
//    spellings of the local host are matched as what they reach as well, and allowed only
//    if both are: a connect or send to 0.0.0.0, ::ffff:0.0.0.0 or :: also needs 127.0.0.1
//    (or ::1), a loopback alias 127.x.y.z also needs 127.0.0.1, and an IPv4-compatible
//    ::a.b.c.d also needs ::ffff:a.b.c.d -- unless the rule that allowed the spelling was
//    written for it (exactly 0.0.0.0 or ::, or a prefix inside 127.0.0.0/8). So ::/0 on
//    443 with ::1 denied does not reach the host's [::1]:443 through [::]:443.
//    Not covered: the host's own interface addresses (10.0.2.15, a public address) route
//    locally too; deny them by prefix (the shipped profiles deny RFC 1918 ranges).
//  - dns_resolvers are allowed on port 53, TCP and UDP.
//  - Unix sockets: connect/sendmsg to a path or abstract name ("@name") must be listed
//    in unix_allow (exact match), unless allow_all_unix. Pathnames are matched as the
//    process spells them, so list absolute paths.
//  - Inet sockets other than TCP stream / UDP datagram (raw, ping, SCTP, MPTCP) cannot
//    be created: their traffic does not pass the address hooks. Families other than
//    unix, inet, inet6 and netlink (route only) are refused by the seccomp layer in every
//    sandbox (seccomp_policy.cc), policy or not.
//  - What no rule allows gets default_action: deny (EPERM), kill (EPERM + SIGKILL) or
//    audit (allowed, reported). audit_mode reports every violation as "audit" and denies
//    nothing. Every violation is an event with mechanism "cgroup-bpf".
#pragma once

#include <agentcage/abi.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

enum class NetProto { any, tcp, udp };
enum class NetAction { deny, kill, audit };

struct NetRule {
  std::string cidr;        // "10.0.0.0/8", "127.0.0.1", "::1/128", "2001:db8::/32"
  uint16_t port_lo = 0;    // inclusive
  uint16_t port_hi = 65535;
  NetProto proto = NetProto::any;
};

// A prefix carved out of wider allow rules: the most specific prefix decides, so
// 10.0.0.0/8 blocked inside an allowed 0.0.0.0/0 is refused with this rule's action
// (an allow rule for a still narrower prefix inside it allows again). All ports.
struct NetBlock {
  std::string cidr;
  NetAction action = NetAction::deny;
};

// A destination by name (profile network.domains). With any domain rule, DNS is answered
// by agentcage (dns/dns_guard.h): every query the sandbox sends to port 53 is redirected
// in the kernel to its resolver, which forwards only names a rule allows (to
// dns_resolvers, which the sandbox itself can then no longer reach directly) and writes
// the addresses of their answers into the kernel's per-sandbox learned map for the TTL
// plus learned_grace_s; a learned address may be connected to on the rule's ports. A
// learned address inside a block prefix stays blocked (DNS rebinding to the LAN).
enum class DomainAction { allow, audit, deny, kill };
struct DomainRule {
  std::string pattern;  // "registry.npmjs.org" or "*.example.com": lower case, no final dot
  std::vector<std::pair<uint16_t, uint16_t>> ports;  // inclusive ranges; empty: every port
  NetProto proto = NetProto::any;
  DomainAction action = DomainAction::allow;
  std::string comment;
};

struct NetPolicy {
  std::vector<NetRule> allow;
  std::vector<NetBlock> block;
  NetAction default_action = NetAction::deny;
  bool audit_mode = false;
  bool allow_all_unix = false;
  std::vector<std::string> unix_allow;     // absolute paths, "@name" for abstract names
  std::vector<std::string> dns_resolvers;  // IP addresses allowed on port 53 (with domains: the upstreams)
  std::vector<DomainRule> domains;
  uint32_t learned_grace_s = 30;
  bool check_names = true;     // port 80/443 connects to learned addresses: SNI / Host read first
  bool allow_unnamed = false;  // with check_names: no SNI / ECH / no Host is let on
};

// A name as written in a profile: letters, digits, '-' and '_' in labels of 1-63 bytes,
// at most 253 in all, optionally "*." first. Returns it in lower case without a final dot.
Result<std::string> parse_domain_pattern(std::string_view text);
// A name as asked on the wire, for matching: lower case, no final dot.
std::string normalize_dns_name(std::string_view name);
// The rule for a (normalized) name: an exact entry first, else the longest "*." entry
// the name lies below. Null: none.
const DomainRule* match_domain(const std::vector<DomainRule>& rules, std::string_view name);
std::string to_string(DomainAction a);

// A parsed prefix in the mapped IPv6 space the kernel side matches in.
struct Cidr {
  std::array<uint8_t, 16> addr{};  // network order; IPv4 as ::ffff:a.b.c.d
  int prefix = 0;                  // bits of addr, 0..128 (IPv4 /n is 96+n)
  bool v4 = false;                 // written as IPv4
};

// "10.0.0.0/8", "192.0.2.1" (host), "2001:db8::/32", "::1". Host bits must be zero.
Result<Cidr> parse_cidr(std::string_view text);

// The CLI spelling of a rule: CIDR[:PORT[-PORT]][/tcp|/udp], IPv6 in brackets when a
// port follows: "127.0.0.1:8000-8100/tcp", "10.0.0.0/8", "[::1]:443", "[2001:db8::/32]:53/udp".
Result<NetRule> parse_net_rule(std::string_view spec);
Result<NetAction> parse_net_action(std::string_view text);  // deny | kill | audit

std::string to_string(NetProto p);
std::string to_string(NetAction a);
std::string to_string(const NetRule& r);  // back to the CLI spelling

// The map entries of one sandbox.
struct CompiledNetPolicy {
  struct Rule {
    ac_net_rule_key key;
    ac_net_rule_value value;
  };
  std::vector<Rule> rules;  // ac_net_rules (LPM trie)
  ac_net_sandbox sandbox;   // ac_net_policy[sandbox key]
  std::vector<ac_net_unix_key> unix_allow;  // ac_net_unix
  bool restricts_unix = false;  // needs the kernel's unix sock_addr hooks
};

// Pure: validates every field (errors name the rule) and merges overlapping prefixes so
// each trie entry carries the ports of every shorter prefix that contains it (the trie
// only returns the longest match).
Result<CompiledNetPolicy> compile(const NetPolicy& policy, uint64_t sandbox_key);

// The command-line network policy (--allow-net, --allow-unix, --net-default), however it
// arrives: from the CLI, or in a CreateSandbox request (the same strings), so both paths
// accept and refuse exactly the same input. Validates everything compile() checks.
// Errors start with the name of the option or request field that holds the bad value.
struct NetFlags {
  std::vector<std::string> allow;       // CIDR[:PORT[-PORT]][/tcp|/udp]
  std::vector<std::string> allow_unix;  // absolute path, @abstract, or "*"
  std::string default_action;           // deny | kill | audit; empty: deny
  std::vector<std::string> allow_domain;  // NAME[:PORT[-PORT]] (parse_allow_domain)
  std::vector<std::string> dns;           // resolver addresses or "system"; with allow_domain, default system
  bool empty() const {
    return allow.empty() && allow_unix.empty() && default_action.empty() && allow_domain.empty() && dns.empty();
  }
};
struct NetFlagNames {
  std::string allow = "--allow-net", allow_unix = "--allow-unix", default_action = "--net-default",
              allow_domain = "--allow-domain", dns = "--dns";
};
// `--allow-domain NAME[:PORT[-PORT]]`: TCP to NAME (exact, or "*.example.com") on PORT,
// 443 when none is given: the CLI spelling of an allow entry of network.domains.
Result<DomainRule> parse_allow_domain(std::string_view spec);
std::string to_flag(const DomainRule& r);  // back to that spelling (single-range TCP allow rules)
// With allow_domain and no dns, the resolvers are the nameservers of `resolv_conf`.
Result<NetPolicy> net_policy_from_flags(const NetFlags& flags, const NetFlagNames& names = {},
                                        const std::string& resolv_conf = "/etc/resolv.conf");
// The inverse, for sending a policy parsed here on to agentcaged.
NetFlags net_flags_of(const NetPolicy& policy);

}  // namespace agentcage::core
