// SPDX-License-Identifier: Apache-2.0
// Synthetic network records (bpf/net.bpf.c layout) through the decoder.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <agentcage/abi.h>

#include <cstring>

#include "core/events/decoder.h"

namespace agentcage::core {
namespace {

DecodeContext ctx() { return DecodeContext{"node1", "0123456789abcdef", 0}; }

std::span<const std::byte> bytes(const ac_net_event& r) {
  return std::span<const std::byte>(reinterpret_cast<const std::byte*>(&r), sizeof r);
}

// A record as the kernel side builds it: IPv4 in mapped form with AC_NET_F_V4.
ac_net_event net_record(uint16_t type, uint8_t op, int family, const char* addr, uint16_t port) {
  ac_net_event r{};
  r.hdr.type = type;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.pid = 42;
  r.hdr.sandbox_id = 0xabc;
  r.op = op;
  r.family = static_cast<uint16_t>(family);
  r.sock_type = SOCK_STREAM;
  r.protocol = IPPROTO_TCP;
  r.port = port;
  std::memcpy(r.comm, "curl", 5);
  if (family == AF_INET) {
    r.addr[10] = r.addr[11] = 0xff;
    EXPECT_EQ(inet_pton(AF_INET, addr, r.addr + 12), 1);
    r.net_flags |= AC_NET_F_V4;
  } else if (family == AF_INET6) {
    EXPECT_EQ(inet_pton(AF_INET6, addr, r.addr), 1);
  }
  return r;
}

TEST(NetDecoder, Ipv4Connect) {
  auto r = net_record(AC_EV_NET, AC_NET_CONNECT, AF_INET, "127.0.0.1", 8080);
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev) << ev.error().message();
  ASSERT_TRUE(ev->has_net());
  EXPECT_EQ(ev->net().op(), "connect");
  EXPECT_EQ(ev->net().protocol(), "tcp");
  EXPECT_EQ(ev->net().remote().family(), "inet");
  EXPECT_EQ(ev->net().remote().address(), "127.0.0.1");
  EXPECT_EQ(ev->net().remote().port(), 8080u);
  EXPECT_FALSE(ev->net().remote().v4_mapped());
  EXPECT_FALSE(ev->net().has_local());
  EXPECT_EQ(ev->sandbox_id(), "0000000000000abc");
}

TEST(NetDecoder, Ipv6AndV4MappedAreShownAsWhatTheyAre) {
  auto r = net_record(AC_EV_NET, AC_NET_CONNECT, AF_INET6, "::1", 443);
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->net().remote().family(), "inet6");
  EXPECT_EQ(ev->net().remote().address(), "::1");
  EXPECT_FALSE(ev->net().remote().v4_mapped());

  r = net_record(AC_EV_NET, AC_NET_SENDMSG, AF_INET6, "::ffff:127.0.0.1", 53);
  r.sock_type = SOCK_DGRAM;
  r.protocol = IPPROTO_UDP;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->net().op(), "sendmsg");
  EXPECT_EQ(ev->net().protocol(), "udp");
  EXPECT_EQ(ev->net().remote().family(), "inet6");
  EXPECT_EQ(ev->net().remote().address(), "127.0.0.1");
  EXPECT_TRUE(ev->net().remote().v4_mapped());
}

TEST(NetDecoder, BindAndListenAreLocal) {
  auto r = net_record(AC_EV_NET, AC_NET_BIND, AF_INET6, "::", 9000);
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_FALSE(ev->net().has_remote());
  EXPECT_EQ(ev->net().local().address(), "::");
  EXPECT_EQ(ev->net().local().port(), 9000u);
}

TEST(NetDecoder, AcceptHasPeerAndLocal) {
  auto r = net_record(AC_EV_NET, AC_NET_ACCEPT, AF_INET, "127.0.0.1", 40000);
  r.local_port = 9000;
  r.local_addr[10] = r.local_addr[11] = 0xff;
  inet_pton(AF_INET, "127.0.0.2", r.local_addr + 12);
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->net().op(), "accept");
  EXPECT_EQ(ev->net().remote().address(), "127.0.0.1");
  EXPECT_EQ(ev->net().remote().port(), 40000u);
  EXPECT_EQ(ev->net().local().address(), "127.0.0.2");
  EXPECT_EQ(ev->net().local().port(), 9000u);
}

TEST(NetDecoder, UnixPathAndAbstractName) {
  auto r = net_record(AC_EV_NET, AC_NET_CONNECT, AF_UNIX, nullptr, 0);
  std::strcpy(r.unix_path, "@agent");
  r.unix_path_len = 6;
  r.net_flags = AC_NET_F_UNIX_ABSTRACT;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->net().protocol(), "unix-stream");
  EXPECT_EQ(ev->net().remote().family(), "unix");
  EXPECT_EQ(ev->net().remote().address(), "@agent");
  EXPECT_EQ(ev->net().remote().port(), 0u);

  // A length beyond the array and no terminator stay in bounds.
  std::memset(r.unix_path, 'a', sizeof r.unix_path);
  r.unix_path_len = 60000;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->net().remote().address().size(), sizeof r.unix_path);
}

TEST(NetDecoder, ViolationCarriesMechanismRuleActionAndAttempt) {
  auto r = net_record(AC_EV_NET_VIOLATION, AC_NET_CONNECT, AF_INET, "127.0.0.1", 9);
  r.action = AC_NET_KILL;
  r.reason = AC_NET_R_NO_RULE;
  r.policy_action = AC_NET_KILL;
  auto ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  ASSERT_TRUE(ev->has_violation());
  const auto& v = ev->violation();
  EXPECT_EQ(v.mechanism(), "cgroup-bpf");
  EXPECT_EQ(v.action(), "kill");
  EXPECT_EQ(v.rule(), "network.default: kill (no allow rule matches address, port and protocol)");
  EXPECT_EQ(v.what(), "connect 127.0.0.1:9/tcp");
  EXPECT_EQ(v.net().result(), -EPERM);
  EXPECT_EQ(v.net().error(), "EPERM");
  EXPECT_EQ(ev->process().pid(), 42u);
  EXPECT_EQ(ev->process().comm(), "curl");

  r.action = AC_NET_AUDIT;
  r.net_flags |= AC_NET_F_AUDIT_MODE;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().action(), "audit");
  EXPECT_EQ(ev->violation().net().result(), 0);  // audit denies nothing
  EXPECT_NE(ev->violation().rule().find("audit mode"), std::string::npos);
  EXPECT_EQ(ev->violation().rule().rfind("network.default: kill", 0), 0u) << ev->violation().rule();

  // A blocked prefix's own action decided (coding-agent's 169.254.169.254/32 kill rule).
  r.action = AC_NET_KILL;
  r.net_flags = AC_NET_F_V4 | AC_NET_F_RULE_ACTION;
  r.policy_action = AC_NET_KILL;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().rule(),
            "network.rules: action kill of a rule for a prefix containing the address (no allow rule matches address, "
            "port and protocol)");

  r = net_record(AC_EV_NET_VIOLATION, AC_NET_SOCKET, AF_INET, "0.0.0.0", 0);
  r.sock_type = SOCK_RAW;
  r.protocol = IPPROTO_ICMP;
  r.action = AC_NET_DENY;
  r.reason = AC_NET_R_SOCKET_TYPE;
  ev = decode_record(bytes(r), ctx());
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->violation().what(), "socket raw");
}

TEST(NetDecoder, ShortRecordIsAnError) {
  auto r = net_record(AC_EV_NET, AC_NET_CONNECT, AF_INET, "127.0.0.1", 1);
  r.hdr.size = sizeof(ac_event_header) + 8;
  auto ev = decode_record(bytes(r).first(r.hdr.size), ctx());
  EXPECT_FALSE(ev);
}

}  // namespace
}  // namespace agentcage::core
