// SPDX-License-Identifier: Apache-2.0
// NetPolicy parsing and compilation into BPF map entries. The compiled entries are
// checked with a reference lookup that does what the kernel's LPM trie does (longest
// matching prefix of this sandbox, then the port ranges of that one entry).
#include "core/policy/net_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <vector>

namespace agentcage::core {
namespace {

constexpr uint64_t kSandbox = 0x1122334455667788ull;

NetRule rule(std::string_view spec) {
  auto r = parse_net_rule(spec);
  EXPECT_TRUE(r) << spec << ": " << r.error().message();
  return r ? *r : NetRule{};
}

// The 16 bytes net.bpf.c puts in the key for an address the process used.
std::array<uint8_t, 16> kernel_addr(const std::string& text) {
  std::array<uint8_t, 16> a{};
  if (inet_pton(AF_INET, text.c_str(), a.data() + 12) == 1) {
    a[10] = a[11] = 0xff;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text.c_str(), a.data()), 1) << text;
  }
  return a;
}

bool bit(const uint8_t* p, int i) { return (p[i / 8] >> (7 - i % 8)) & 1; }

// Reference LPM lookup over the compiled entries, as the kernel does it.
bool allowed(const CompiledNetPolicy& c, uint64_t sandbox, const std::string& addr, uint16_t port, uint8_t proto) {
  auto a = kernel_addr(addr);
  ac_net_rule_key probe{};
  probe.prefixlen = 64 + 128;
  probe.sandbox_lo = static_cast<uint32_t>(sandbox);
  probe.sandbox_hi = static_cast<uint32_t>(sandbox >> 32);
  std::memcpy(probe.addr, a.data(), 16);
  const uint8_t* pdata = reinterpret_cast<const uint8_t*>(&probe.sandbox_lo);
  const CompiledNetPolicy::Rule* best = nullptr;
  for (const auto& r : c.rules) {
    const uint8_t* rdata = reinterpret_cast<const uint8_t*>(&r.key.sandbox_lo);
    bool match = true;
    for (uint32_t i = 0; i < r.key.prefixlen && match; ++i) match = bit(rdata, static_cast<int>(i)) == bit(pdata, static_cast<int>(i));
    if (match && (!best || r.key.prefixlen > best->key.prefixlen)) best = &r;
  }
  if (!best) return false;
  for (uint32_t i = 0; i < best->value.count; ++i) {
    const auto& pr = best->value.ranges[i];
    if ((pr.proto & proto) && port >= pr.lo && port <= pr.hi) return true;
  }
  return false;
}

CompiledNetPolicy compiled(const NetPolicy& p) {
  auto c = compile(p, kSandbox);
  EXPECT_TRUE(c) << c.error().message();
  return c ? *c : CompiledNetPolicy{};
}

TEST(NetPolicy, ParsesRuleSpellings) {
  auto r = rule("127.0.0.1:8000-8100/tcp");
  EXPECT_EQ(r.cidr, "127.0.0.1");
  EXPECT_EQ(r.port_lo, 8000);
  EXPECT_EQ(r.port_hi, 8100);
  EXPECT_EQ(r.proto, NetProto::tcp);

  r = rule("10.0.0.0/8");
  EXPECT_EQ(r.cidr, "10.0.0.0/8");
  EXPECT_EQ(r.port_lo, 0);
  EXPECT_EQ(r.port_hi, 65535);
  EXPECT_EQ(r.proto, NetProto::any);

  r = rule("[::1]:443");
  EXPECT_EQ(r.cidr, "::1");
  EXPECT_EQ(r.port_lo, 443);
  EXPECT_EQ(r.port_hi, 443);

  r = rule("[2001:db8::/32]:53/udp");
  EXPECT_EQ(r.cidr, "2001:db8::/32");
  EXPECT_EQ(r.proto, NetProto::udp);

  r = rule("2001:db8::/32");  // bare IPv6: all ports
  EXPECT_EQ(r.cidr, "2001:db8::/32");
  EXPECT_EQ(r.port_hi, 65535);

  for (const char* spec : {"127.0.0.1:8000-8100/tcp", "10.0.0.0/8", "[::1]:443", "[2001:db8::/32]:53/udp", "::1/udp"})
    EXPECT_EQ(to_string(rule(spec)), spec);
}

TEST(NetPolicy, RejectsBadRulesWithClearErrors) {
  struct Case {
    const char* spec;
    const char* says;
  } cases[] = {
      {"127.0.0.1:99999", "port '99999'"},
      {"127.0.0.1:http", "port 'http'"},
      {"127.0.0.1:90-80", "reversed"},
      {"127.0.0.1:", "empty port"},
      {"300.1.1.1", "not an IPv4 or IPv6 address"},
      {"10.0.0.0/33", "prefix length '33'"},
      {"10.0.0.0/", "prefix length ''"},
      {"10.0.0.1/8", "bits set beyond the /8"},
      {"[::1", "missing ']'"},
      {"[::1]443", "expected ':PORT'"},
      {"", "no address"},
  };
  for (const auto& c : cases) {
    auto r = parse_net_rule(c.spec);
    ASSERT_FALSE(r) << c.spec;
    EXPECT_NE(r.error().context.find(c.says), std::string::npos) << c.spec << " -> " << r.error().context;
    EXPECT_NE(r.error().context.find(std::string("'") + c.spec + "'"), std::string::npos) << r.error().context;
  }
  auto r = parse_cidr("10.0.0.1/8");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().hint.find("10.0.0.0/8"), std::string::npos) << r.error().hint;
}

TEST(NetPolicy, ParsesActions) {
  EXPECT_EQ(*parse_net_action("deny"), NetAction::deny);
  EXPECT_EQ(*parse_net_action("kill"), NetAction::kill);
  EXPECT_EQ(*parse_net_action("audit"), NetAction::audit);
  EXPECT_FALSE(parse_net_action("allow"));
}

TEST(NetPolicy, Ipv4RuleCoversV4MappedIpv6AndNotOtherIpv6) {
  NetPolicy p;
  p.allow = {rule("127.0.0.0/8:80/tcp")};
  auto c = compiled(p);
  ASSERT_EQ(c.rules.size(), 1u);
  EXPECT_EQ(c.rules[0].key.prefixlen, 64u + 96 + 8);
  EXPECT_TRUE(allowed(c, kSandbox, "127.0.0.1", 80, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "127.255.0.9", 80, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "::ffff:127.0.0.1", 80, AC_NET_P_TCP));  // v4-mapped checked as IPv4
  EXPECT_FALSE(allowed(c, kSandbox, "::ffff:128.0.0.1", 80, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "::1", 80, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.1", 81, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.1", 80, AC_NET_P_UDP));
  EXPECT_FALSE(allowed(c, kSandbox, "128.0.0.1", 80, AC_NET_P_TCP));
}

TEST(NetPolicy, Ipv6Rules) {
  NetPolicy p;
  p.allow = {rule("[::1]:443"), rule("[2001:db8::/32]:53/udp")};
  auto c = compiled(p);
  EXPECT_TRUE(allowed(c, kSandbox, "::1", 443, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "::1", 443, AC_NET_P_UDP));
  EXPECT_FALSE(allowed(c, kSandbox, "::2", 443, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "2001:db8:ffff::1", 53, AC_NET_P_UDP));
  EXPECT_FALSE(allowed(c, kSandbox, "2001:db8:ffff::1", 53, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "2001:db9::1", 53, AC_NET_P_UDP));
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.1", 443, AC_NET_P_TCP));  // ::1 is not 127.0.0.1
}

TEST(NetPolicy, PortRangesAndProtocolsOnOnePrefixMerge) {
  NetPolicy p;
  p.allow = {rule("10.0.0.0/8:80-90/tcp"), rule("10.0.0.0/8:85-100/tcp"), rule("10.0.0.0/8:101/tcp"),
             rule("10.0.0.0/8:53/udp"), rule("10.0.0.0/8:53/tcp")};
  auto c = compiled(p);
  ASSERT_EQ(c.rules.size(), 1u);
  // 80-101/tcp (merged: overlapping and adjacent) and 53/tcp+udp (same bounds, one mask).
  EXPECT_EQ(c.rules[0].value.count, 2u);
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 101, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 80, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "10.1.2.3", 102, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "10.1.2.3", 80, AC_NET_P_UDP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 53, AC_NET_P_UDP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 53, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "10.1.2.3", 53, AC_NET_P_OTHER));
}

// The deny action the kernel would apply for addr: the longest entry's, 0 = default.
uint32_t deny_action(const CompiledNetPolicy& c, const std::string& addr) {
  auto a = kernel_addr(addr);
  const CompiledNetPolicy::Rule* best = nullptr;
  for (const auto& r : c.rules) {
    int plen = static_cast<int>(r.key.prefixlen) - 64;
    bool match = true;
    for (int i = 0; i < plen && match; ++i) match = bit(r.key.addr, i) == bit(a.data(), i);
    if (match && (!best || r.key.prefixlen > best->key.prefixlen)) best = &r;
  }
  return best ? best->value.deny_action : 0;
}

// Blocks carve prefixes out of wider allows; the most specific prefix decides, and a
// narrower allow inside a block allows again (the coding-agent profile's shape).
TEST(NetPolicy, BlocksCarveOutOfWiderAllows) {
  NetPolicy p;
  p.allow = {rule("0.0.0.0/0:443/tcp"), rule("10.1.0.0/16:22/tcp")};
  p.block = {{"10.0.0.0/8", NetAction::deny}, {"169.254.169.254/32", NetAction::kill}, {"127.0.0.0/8", NetAction::deny}};
  p.dns_resolvers = {"127.0.0.53"};
  auto c = compiled(p);
  EXPECT_TRUE(allowed(c, kSandbox, "192.0.2.1", 443, AC_NET_P_TCP));
  EXPECT_EQ(deny_action(c, "192.0.2.1"), 0u);  // outside every block: the sandbox default
  EXPECT_FALSE(allowed(c, kSandbox, "10.2.0.1", 443, AC_NET_P_TCP));  // blocked despite 0/0:443
  EXPECT_EQ(deny_action(c, "10.2.0.1"), static_cast<uint32_t>(AC_NET_DENY));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 22, AC_NET_P_TCP));    // narrower allow inside
  EXPECT_FALSE(allowed(c, kSandbox, "10.1.2.3", 443, AC_NET_P_TCP));  // 0/0's 443 stays cut off
  EXPECT_EQ(deny_action(c, "10.1.2.3"), static_cast<uint32_t>(AC_NET_DENY));
  EXPECT_FALSE(allowed(c, kSandbox, "169.254.169.254", 443, AC_NET_P_TCP));
  EXPECT_EQ(deny_action(c, "169.254.169.254"), static_cast<uint32_t>(AC_NET_KILL));
  EXPECT_TRUE(allowed(c, kSandbox, "127.0.0.53", 53, AC_NET_P_UDP));   // resolver inside a block
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.53", 443, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.1", 443, AC_NET_P_TCP));
  // A block and an allow for the same prefix: the strictest wins.
  NetPolicy q;
  q.allow = {rule("10.0.0.0/8")};
  q.block = {{"10.0.0.0/8", NetAction::kill}};
  auto d = compiled(q);
  EXPECT_FALSE(allowed(d, kSandbox, "10.0.0.1", 80, AC_NET_P_TCP));
  EXPECT_EQ(deny_action(d, "10.0.0.1"), static_cast<uint32_t>(AC_NET_KILL));
}

TEST(NetPolicy, OverlappingPrefixesKeepTheShorterPrefixPorts) {
  // The trie returns only 10.1.0.0/16 for 10.1.2.3: its entry must carry /8's port 80.
  NetPolicy p;
  p.allow = {rule("10.0.0.0/8:80/tcp"), rule("10.1.0.0/16:443/tcp"), rule("0.0.0.0/0:22/tcp")};
  auto c = compiled(p);
  ASSERT_EQ(c.rules.size(), 3u);
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 80, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 443, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.1.2.3", 22, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "10.2.0.1", 80, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "10.2.0.1", 443, AC_NET_P_TCP));
  EXPECT_TRUE(allowed(c, kSandbox, "192.0.2.1", 22, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "192.0.2.1", 80, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "2001:db8::1", 22, AC_NET_P_TCP));  // 0.0.0.0/0 is IPv4 only
}

TEST(NetPolicy, RulesOfOneSandboxNeverMatchAnother) {
  NetPolicy p;
  p.allow = {rule("0.0.0.0/0"), rule("::/0")};
  auto c = compiled(p);
  EXPECT_TRUE(allowed(c, kSandbox, "192.0.2.1", 1, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox ^ 1, "192.0.2.1", 1, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox ^ (1ull << 63), "2001:db8::1", 1, AC_NET_P_TCP));
  for (const auto& r : c.rules) EXPECT_GE(r.key.prefixlen, 64u);
}

TEST(NetPolicy, DnsResolversGetPort53) {
  NetPolicy p;
  p.dns_resolvers = {"127.0.0.53", "::1"};
  auto c = compiled(p);
  EXPECT_TRUE(allowed(c, kSandbox, "127.0.0.53", 53, AC_NET_P_UDP));
  EXPECT_TRUE(allowed(c, kSandbox, "127.0.0.53", 53, AC_NET_P_TCP));
  EXPECT_FALSE(allowed(c, kSandbox, "127.0.0.53", 54, AC_NET_P_UDP));
  EXPECT_TRUE(allowed(c, kSandbox, "::1", 53, AC_NET_P_UDP));
  p.dns_resolvers = {"resolver.example"};
  auto bad = compile(p, kSandbox);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().context.find("dns resolver 'resolver.example'"), std::string::npos) << bad.error().context;
}

TEST(NetPolicy, TooManyPortRangesIsAnErrorNamingTheRule) {
  NetPolicy p;
  for (int port = 1000; port < 1000 + 2 * (AC_NET_MAX_PORT_RANGES + 1); port += 2)
    p.allow.push_back(rule("10.0.0.0/8:" + std::to_string(port) + "/tcp"));
  auto c = compile(p, kSandbox);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().context.find("10.0.0.0/8"), std::string::npos) << c.error().context;
  EXPECT_NE(c.error().context.find("at most"), std::string::npos) << c.error().context;
}

TEST(NetPolicy, ActionsModesAndUnixNames) {
  NetPolicy p;
  p.default_action = NetAction::kill;
  p.unix_allow = {"/run/agent.sock", "@abstract"};
  auto c = compiled(p);
  EXPECT_EQ(c.sandbox.default_action, static_cast<uint32_t>(AC_NET_KILL));
  EXPECT_EQ(c.sandbox.flags, 0u);
  EXPECT_TRUE(c.restricts_unix);
  ASSERT_EQ(c.unix_allow.size(), 2u);
  EXPECT_STREQ(c.unix_allow[0].path, "/run/agent.sock");
  EXPECT_STREQ(c.unix_allow[1].path, "@abstract");
  EXPECT_EQ(c.unix_allow[1].sandbox, kSandbox);

  p.audit_mode = true;
  p.allow_all_unix = true;
  p.unix_allow.clear();
  c = compiled(p);
  EXPECT_EQ(c.sandbox.flags, uint32_t{AC_NET_S_AUDIT | AC_NET_S_UNIX_ANY});
  EXPECT_FALSE(c.restricts_unix);

  for (const std::string& bad : std::vector<std::string>{"relative.sock", "@", "/" + std::string(200, 'x')}) {
    NetPolicy q;
    q.unix_allow = {bad};
    EXPECT_FALSE(compile(q, kSandbox)) << bad;
  }
  EXPECT_FALSE(compile(NetPolicy{}, 0));  // key 0 is host mode
}

}  // namespace
}  // namespace agentcage::core
