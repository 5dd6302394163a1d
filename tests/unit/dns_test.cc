// SPDX-License-Identifier: Apache-2.0
// Issue 14: the resolver's wire format and the name rules it applies.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/dns/dns_wire.h"
#include "core/policy/net_policy.h"
#include "core/policy/profile.h"
#include "core/sandbox/sandbox_policy.h"

namespace agentcage::core {
namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

void put_name(Bytes& b, const std::vector<std::string>& labels) {
  for (const auto& l : labels) {
    b.push_back(static_cast<uint8_t>(l.size()));
    b.insert(b.end(), l.begin(), l.end());
  }
  b.push_back(0);
}

Bytes query(uint16_t id, const std::vector<std::string>& labels, uint16_t type) {
  Bytes b;
  put16(b, id);
  put16(b, 0x0100);  // RD
  put16(b, 1);
  put16(b, 0);
  put16(b, 0);
  put16(b, 0);
  put_name(b, labels);
  put16(b, type);
  put16(b, 1);
  return b;
}

TEST(DnsWire, AQueryIsParsedAndItsRefusalEchoesTheQuestion) {
  Bytes q = query(0x1234, {"Registry", "NPMJS", "org"}, kDnsTypeA);
  auto p = parse_dns_query(q);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->id, 0x1234);
  EXPECT_EQ(p->name, "Registry.NPMJS.org");
  EXPECT_EQ(normalize_dns_name(p->name + "."), "registry.npmjs.org");
  EXPECT_EQ(p->type, kDnsTypeA);
  EXPECT_EQ(p->end, q.size());
  Bytes r = dns_reply_without_records(q, *p, kDnsRefused);
  ASSERT_EQ(r.size(), q.size());
  EXPECT_EQ(r[0], 0x12);
  EXPECT_EQ(r[1], 0x34);
  EXPECT_EQ(r[2] & 0x80, 0x80);  // QR
  EXPECT_EQ(r[3] & 0x0f, kDnsRefused);
  EXPECT_EQ(r[5], 1);  // one question, no records
  EXPECT_EQ(r[7], 0);
  EXPECT_TRUE(std::equal(q.begin() + 12, q.end(), r.begin() + 12));
}

TEST(DnsWire, MalformedQueriesAreErrorsNotReads) {
  EXPECT_FALSE(parse_dns_query(Bytes{1, 2, 3}));
  Bytes q = query(1, {"a", "b"}, kDnsTypeA);
  q.resize(q.size() - 3);  // question cut short
  EXPECT_FALSE(parse_dns_query(q));
  Bytes loop = query(1, {}, kDnsTypeA);
  loop[12] = 0xc0;  // a pointer to itself
  loop.insert(loop.begin() + 13, 12);
  EXPECT_FALSE(parse_dns_query(loop));
  Bytes two = query(1, {"a"}, kDnsTypeA);
  two[5] = 2;
  EXPECT_FALSE(parse_dns_query(two));
  Bytes resp = query(1, {"a"}, kDnsTypeA);
  resp[2] |= 0x80;
  EXPECT_FALSE(parse_dns_query(resp));
}

// A '.' inside a label is another name than its dotted text: it matches no rule.
TEST(DnsWire, ADotInsideALabelIsNotTheDottedName) {
  auto p = parse_dns_query(query(1, {"registry.npmjs", "org"}, kDnsTypeA));
  ASSERT_TRUE(p);
  EXPECT_NE(normalize_dns_name(p->name), "registry.npmjs.org");
  std::vector<DomainRule> rules{{.pattern = "registry.npmjs.org"}};
  EXPECT_EQ(match_domain(rules, normalize_dns_name(p->name)), nullptr);
}

// Addresses of the name asked and of its CNAME targets are taken, compressed names
// included; a record for an unrelated name in the same answer is not.
TEST(DnsWire, AnAnswerGivesTheAddressesOfTheNameAndItsCnameChain) {
  Bytes m = query(7, {"www", "example", "com"}, kDnsTypeA);
  m[2] = 0x81;  // QR RD
  m[3] = 0x80;  // RA, NOERROR
  m[7] = 3;     // three answers
  // www.example.com CNAME cdn.example.net (owner compressed to the question at 12)
  put16(m, 0xc00c);
  put16(m, kDnsTypeCname);
  put16(m, 1);
  put16(m, 0);
  put16(m, 60);
  Bytes target;
  put_name(target, {"cdn", "example", "net"});
  size_t cdn_at = m.size() + 2;
  put16(m, static_cast<uint16_t>(target.size()));
  m.insert(m.end(), target.begin(), target.end());
  // cdn.example.net A 192.0.2.7 ttl 30
  put16(m, static_cast<uint16_t>(0xc000 | cdn_at));
  put16(m, kDnsTypeA);
  put16(m, 1);
  put16(m, 0);
  put16(m, 30);
  put16(m, 4);
  m.insert(m.end(), {192, 0, 2, 7});
  // evil.test A 198.51.100.1: not on the chain
  put_name(m, {"evil", "test"});
  put16(m, kDnsTypeA);
  put16(m, 1);
  put16(m, 0);
  put16(m, 30);
  put16(m, 4);
  m.insert(m.end(), {198, 51, 100, 1});

  auto q = parse_dns_query(query(7, {"WWW", "example", "com"}, kDnsTypeA));
  ASSERT_TRUE(q);
  auto a = parse_dns_answer(m, *q);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->id, 7);
  EXPECT_EQ(a->rcode, kDnsNoError);
  ASSERT_EQ(a->addresses.size(), 1u);
  EXPECT_EQ(address_text(a->addresses[0]), "192.0.2.7");
  EXPECT_EQ(a->addresses[0].ttl, 30u);

  // Cut anywhere, it is an error or a shorter answer, never a read past the end.
  for (size_t n = 0; n < m.size(); ++n) (void)parse_dns_answer(Bytes(m.begin(), m.begin() + n), *q);
  // An answer to another question is refused.
  auto other = parse_dns_query(query(7, {"www", "example", "org"}, kDnsTypeA));
  ASSERT_TRUE(other);
  EXPECT_FALSE(parse_dns_answer(m, *other));
}

TEST(DomainRules, NamesAreLintedAndNormalized) {
  EXPECT_EQ(parse_domain_pattern("Registry.NPMJS.org.").value(), "registry.npmjs.org");
  EXPECT_EQ(parse_domain_pattern("*.githubusercontent.com").value(), "*.githubusercontent.com");
  EXPECT_EQ(parse_domain_pattern("_acme-challenge.example.com").value(), "_acme-challenge.example.com");
  for (const char* bad : {"", "*", "*.com", "a..b", "-a.com", "a-.com", "a*.com", "*.*.com", "a b.com", "exa\x01mple.com",
                          "a.b.c/d"}) {
    auto r = parse_domain_pattern(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message().find("is not a domain name"), std::string::npos) << r.error().message();
      EXPECT_EQ(r.error().message().find('\x01'), std::string::npos) << "raw bytes in the message";
    }
  }
  EXPECT_FALSE(parse_domain_pattern(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(parse_domain_pattern(std::string(63, 'a') + ".com"));
}

TEST(DomainRules, TheMostSpecificEntryDecides) {
  std::vector<DomainRule> rules{{.pattern = "*.example.com"},
                                {.pattern = "*.evil.example.com", .action = DomainAction::deny},
                                {.pattern = "ok.evil.example.com", .action = DomainAction::audit}};
  auto pat = [&](std::string_view n) {
    const DomainRule* r = match_domain(rules, n);
    return r ? r->pattern : std::string("(none)");
  };
  EXPECT_EQ(pat("a.example.com"), "*.example.com");
  EXPECT_EQ(pat("a.b.example.com"), "*.example.com");
  EXPECT_EQ(pat("example.com"), "(none)");  // a wildcard is only what lies below
  EXPECT_EQ(pat("x.evil.example.com"), "*.evil.example.com");
  EXPECT_EQ(pat("ok.evil.example.com"), "ok.evil.example.com");
  EXPECT_EQ(pat("notexample.com"), "(none)");
  EXPECT_EQ(pat("a.example.com.evil.test"), "(none)");
}

// What the resolver cannot serve is refused when the profile compiles, naming the field.
Result<SandboxPolicy> compile_text(const std::string& network_yaml, const std::string& extra = "") {
  char dir[] = "/tmp/agentcage-dns-unit-XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/p.yaml";
  std::ofstream(path) << "name: p\n" << extra << network_yaml;
  auto r = resolve_profile(path, ProfileVars{"/w", "/h", "u", "/t"}, {});
  ::unlink(path.c_str());
  ::rmdir(dir);
  if (!r) return std::unexpected(r.error());
  return compile_profile(r->profile, PolicyContext{});
}

TEST(DomainRules, ProfilesTheResolverCannotServeAreRefused) {
  const std::string ok = "network:\n  dns: [192.0.2.53]\n  domains:\n    - name: registry.npmjs.org\n      ports: [443]\n";
  auto good = compile_text("actions:\n  network: deny\n" + ok);
  ASSERT_TRUE(good) << good.error().message();
  ASSERT_TRUE(good->net);
  ASSERT_EQ(good->net->domains.size(), 1u);
  EXPECT_EQ(good->net->domains[0].pattern, "registry.npmjs.org");
  EXPECT_EQ(good->net->learned_grace_s, 30u);
  // The resolvers are where the guard forwards, not what the sandbox may query itself.
  EXPECT_TRUE(good->net->allow.empty());

  auto expect_error = [](const Result<SandboxPolicy>& r, const std::string& what) {
    ASSERT_FALSE(r) << "accepted; expected: " << what;
    EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  };
  expect_error(compile_text("actions:\n  network: allow\n" + ok), "network.domains needs actions.network to refuse");
  expect_error(compile_text("actions:\n  network: deny\nnetwork:\n  domains:\n    - name: a.example\n"),
               "network.domains needs network.dns");
  auto kill = compile_text("actions:\n  network: deny\n" + ok + "      action: kill\n");
  ASSERT_TRUE(kill) << kill.error().message();
  EXPECT_EQ(kill->net->domains[0].action, DomainAction::kill);
  expect_error(compile_text("actions:\n  network: deny\n" + ok, "process:\n  namespaces: [net]\n"),
               "network.domains with process.namespaces: [net]");
  expect_error(compile_text("actions:\n  network: deny\n"
                            "network:\n  dns: [192.0.2.53]\n  domains:\n    - name: a.exa mple\n"),
               "network.domains");
}

// `--allow-domain NAME[:PORT[-PORT]]`: a TCP allow entry, 443 by default; the flags
// policy forwards to --dns or, without it, to resolv.conf's nameservers.
TEST(AllowDomain, TheSpellingIsParsedAndRoundTrips) {
  auto a = parse_allow_domain("Registry.NPMjs.org.");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->pattern, "registry.npmjs.org");
  EXPECT_EQ(a->ports, (std::vector<std::pair<uint16_t, uint16_t>>{{443, 443}}));
  EXPECT_EQ(a->proto, NetProto::tcp);
  EXPECT_EQ(a->action, DomainAction::allow);
  EXPECT_EQ(to_flag(*a), "registry.npmjs.org:443");
  auto r = parse_allow_domain("*.example.com:8000-8100");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->ports.front(), (std::pair<uint16_t, uint16_t>{8000, 8100}));
  EXPECT_EQ(to_flag(*r), "*.example.com:8000-8100");
  for (const char* bad : {"", "a.example:", "a.example:0", "a.example:70000", "a.example:9-8", "*.com", "a..b",
                          "a.example:80:81", "a\x01.example", "[::1]:443"}) {
    auto e = parse_allow_domain(bad);
    EXPECT_FALSE(e) << bad;
  }
}

TEST(AllowDomain, FlagsForwardToTheirResolverOrTheSystemOnes) {
  char dir[] = "/tmp/agentcage-resolv-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string conf = std::string(dir) + "/resolv.conf";
  std::ofstream(conf) << "search example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n";
  NetFlags f;
  f.allow_domain = {"pypi.org", "*.pythonhosted.org"};
  auto sys = net_policy_from_flags(f, {}, conf);
  ASSERT_TRUE(sys) << sys.error().message();
  EXPECT_EQ(sys->domains.size(), 2u);
  EXPECT_EQ(sys->dns_resolvers, (std::vector<std::string>{"192.0.2.53", "fe80::1"}));
  EXPECT_EQ(sys->default_action, NetAction::deny);
  // Sent to agentcaged as flags and parsed there to the same policy, resolvers included.
  auto back = net_policy_from_flags(net_flags(network_options(net_flags_of(*sys))), {}, "/nonexistent");
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->dns_resolvers, sys->dns_resolvers);
  ASSERT_EQ(back->domains.size(), 2u);
  EXPECT_EQ(back->domains[1].pattern, "*.pythonhosted.org");
  EXPECT_EQ(back->domains[1].ports, sys->domains[1].ports);

  f.dns = {"127.0.0.77"};
  auto own = net_policy_from_flags(f, {}, conf);
  ASSERT_TRUE(own) << own.error().message();
  EXPECT_EQ(own->dns_resolvers, (std::vector<std::string>{"127.0.0.77"}));

  f.dns = {"resolver.example"};
  auto bad = net_policy_from_flags(f, {}, conf);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("--dns: 'resolver.example' is not an IP address"), std::string::npos)
      << bad.error().message();
  f.dns.clear();
  auto none = net_policy_from_flags(f, {}, "/nonexistent");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("--allow-domain: no resolver"), std::string::npos) << none.error().message();
  f.allow_domain = {"bad name"};
  auto bn = net_policy_from_flags(f, {}, conf);
  ASSERT_FALSE(bn);
  EXPECT_NE(bn.error().message().find("--allow-domain: 'bad name' is not a domain name"), std::string::npos)
      << bn.error().message();
  ::unlink(conf.c_str());
  ::rmdir(dir);
}

// With a profile, the names join its network.domains: what is compiled and recorded.
TEST(AllowDomain, AProfileIsAmendedNotOverridden) {
  char dir[] = "/tmp/agentcage-amend-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/p.yaml";
  std::ofstream(path) << "name: p\nactions:\n  network: deny\n"
                         "network:\n  domains:\n    - name: blocked.example\n      action: deny\n";
  auto r = resolve_profile(path, ProfileVars{"/w", "/h", "u", "/t"}, {});
  ASSERT_TRUE(r) << r.error().message();
  // No dns in the profile: the system resolvers, as `dns: [system]` would.
  ASSERT_TRUE(add_allowed_domains(r->profile, {"api.example.com", "git.example.com:8443"}, "--allow-domain"));
  ASSERT_EQ(r->profile.network().domains_size(), 3);
  EXPECT_EQ(r->profile.network().dns(0), "system");
  const auto& added = r->profile.network().domains(2);
  EXPECT_EQ(added.name(), "git.example.com");
  EXPECT_EQ(added.ports(0).lo(), 8443u);
  PolicyContext ctx;
  ctx.resolv_conf = std::string(dir) + "/resolv.conf";
  std::ofstream(ctx.resolv_conf) << "nameserver 192.0.2.53\n";
  auto c = compile_profile(r->profile, ctx);
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->net->domains.size(), 3u);
  EXPECT_EQ(match_domain(c->net->domains, "api.example.com")->action, DomainAction::allow);
  EXPECT_EQ(match_domain(c->net->domains, "blocked.example")->action, DomainAction::deny);
  EXPECT_EQ(c->net->dns_resolvers, (std::vector<std::string>{"192.0.2.53"}));

  // The profile's own entry decides for its name: a flag does not flip a deny.
  auto dup = add_allowed_domains(r->profile, {"Blocked.Example"}, "--allow-domain");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message().find("profile p already has an entry for blocked.example"), std::string::npos)
      << dup.error().message();
  auto bad = add_allowed_domains(r->profile, {"x.example:0"}, "network.allow_domain");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("network.allow_domain: 'x.example:0'"), std::string::npos)
      << bad.error().message();
  ::unlink(ctx.resolv_conf.c_str());
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace agentcage::core
