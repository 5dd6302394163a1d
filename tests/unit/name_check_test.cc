// SPDX-License-Identifier: Apache-2.0
// Issue 14 item 4: the name a connection asks for in its first bytes (TLS ClientHello
// SNI, HTTP Host), read before anything reaches the server. Malformed input is a refusal
// with a reason, never a read past the bytes received.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/dns/name_check.h"

namespace agentcage::core {
namespace {

using Bytes = std::vector<uint8_t>;
using K = WireName::Kind;

void put16(Bytes& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

Bytes ext(uint16_t type, const Bytes& body) {
  Bytes e;
  put16(e, type);
  put16(e, body.size());
  e.insert(e.end(), body.begin(), body.end());
  return e;
}

Bytes sni_ext(const std::vector<std::string>& names) {
  Bytes list;
  for (const auto& n : names) {
    list.push_back(0);  // host_name
    put16(list, n.size());
    list.insert(list.end(), n.begin(), n.end());
  }
  Bytes body;
  put16(body, list.size());
  body.insert(body.end(), list.begin(), list.end());
  return ext(0, body);
}

// A TLS 1.3-shaped ClientHello in one record with these extensions.
Bytes client_hello(const std::vector<Bytes>& exts, bool with_ext_block = true) {
  Bytes h;
  put16(h, 0x0303);
  h.insert(h.end(), 32, 0xab);  // random
  h.push_back(32);
  h.insert(h.end(), 32, 0xcd);  // session id
  put16(h, 4);
  put16(h, 0x1301);
  put16(h, 0x1302);
  h.push_back(1);
  h.push_back(0);  // null compression
  if (with_ext_block) {
    Bytes all;
    for (const auto& e : exts) all.insert(all.end(), e.begin(), e.end());
    put16(h, all.size());
    h.insert(h.end(), all.begin(), all.end());
  }
  Bytes hs{1, 0, 0, 0};
  hs[1] = static_cast<uint8_t>(h.size() >> 16);
  hs[2] = static_cast<uint8_t>(h.size() >> 8);
  hs[3] = static_cast<uint8_t>(h.size());
  hs.insert(hs.end(), h.begin(), h.end());
  Bytes rec{0x16, 3, 1};
  put16(rec, hs.size());
  rec.insert(rec.end(), hs.begin(), hs.end());
  return rec;
}

WireName of(const Bytes& b) { return wire_name(b); }
WireName of(const std::string& s) { return wire_name(Bytes(s.begin(), s.end())); }

TEST(WireName, TheSniOfAClientHelloIsItsName) {
  auto hello = client_hello({ext(10, {0, 2, 0, 29}), sni_ext({"Registry.NPMjs.org."}), ext(16, {0, 3, 2, 'h', '2'})});
  auto w = of(hello);
  EXPECT_EQ(w.kind, K::tls);
  EXPECT_EQ(w.name, "registry.npmjs.org");
  EXPECT_FALSE(w.ech);
  EXPECT_TRUE(w.error.empty()) << w.error;
  // Every prefix is incomplete (read on), never a misread.
  for (size_t n = 0; n < hello.size(); ++n) {
    auto p = wire_name(std::span<const uint8_t>(hello.data(), n));
    EXPECT_EQ(p.kind, K::incomplete) << n;
  }
}

TEST(WireName, NoSniEchAndMalformedHellosAreToldApart) {
  auto none = of(client_hello({ext(10, {0, 2, 0, 29})}));
  EXPECT_EQ(none.kind, K::tls);
  EXPECT_TRUE(none.name.empty());
  EXPECT_TRUE(none.error.empty());
  EXPECT_TRUE(of(client_hello({}, false)).name.empty());
  auto ech = of(client_hello({sni_ext({"public.example"}), ext(0xfe0d, {0, 1, 2, 3})}));
  EXPECT_TRUE(ech.ech);
  EXPECT_EQ(ech.name, "public.example");
  EXPECT_NE(of(client_hello({sni_ext({"a.example"}), sni_ext({"b.example"})})).error, "");
  EXPECT_NE(of(client_hello({sni_ext({"a.example", "b.example"})})).error, "");
  EXPECT_NE(of(client_hello({sni_ext({"a b.example"})})).error, "");
  EXPECT_NE(of(client_hello({sni_ext({std::string("a\0b.example", 11)})})).error, "");
  // An extension claiming more bytes than the hello holds.
  auto bad = client_hello({sni_ext({"a.example"})});
  bad[bad.size() - 15] = 0x7f;  // the server_name extension's length
  EXPECT_NE(of(bad).error, "");
  // Not a ClientHello, a record that is too long, a hello split over records.
  auto server_hello = client_hello({});
  server_hello[5] = 2;
  EXPECT_NE(of(server_hello).error, "");
  EXPECT_NE(of(Bytes{0x16, 3, 1, 0x7f, 0xff}).error, "");
  auto split = client_hello({sni_ext({"a.example"})});
  split[4] = static_cast<uint8_t>(split[4] - 20);
  split.resize(split.size() - 20);
  EXPECT_NE(of(split).error, "");
}

TEST(WireName, TheHostOfTheFirstHttpRequestIsItsName) {
  auto w = of("GET /x HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  Pypi.ORG:80 \r\n\r\n");
  EXPECT_EQ(w.kind, K::http);
  EXPECT_EQ(w.name, "pypi.org");
  EXPECT_TRUE(w.error.empty()) << w.error;
  EXPECT_EQ(of("GET / HTTP/1.1\r\nHost: a.example\r\n").kind, K::incomplete);
  EXPECT_EQ(of("GE").kind, K::incomplete);
  // Whatever a server might read another name from is refused (review findings): an
  // absolute-form target in any spelling, doubled spaces, a host with bytes no DNS name
  // has (a wildcard entry would match "evil.com:.x.allowed.com"), bare LF, folding,
  // a space before the colon, both body framings.
  for (const char* req : {"GET http://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
                          "GET HTTP://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
                          "GET foo://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
                          "GET  http://evil.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
                          "GET /  HTTP/1.1\r\nHost: a.example\r\n\r\n",
                          "GET / HTTP/2.0\r\nHost: a.example\r\n\r\n",
                          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: evil.com:.x.allowed.com:80\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: evil.com,a.allowed.com\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: user@a.allowed.com\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a.allowed.com:8x\r\n\r\n",
                          "GET / HTTP/1.1\r\nX: y\nHost: evil.com\r\nHost2: a\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a.allowed.com\r\n evil.com\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost : evil.com\r\nHost: a.allowed.com\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a.allowed.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"}) {
    auto v = of(std::string(req));
    EXPECT_TRUE(!v.error.empty() || v.kind == K::other) << req << " read as " << v.name;
  }
  EXPECT_EQ(of("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n").name, "a.example");
  EXPECT_NE(of("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n").error, "");
  // SNI: only what a DNS name is made of.
  EXPECT_NE(of(client_hello({sni_ext({"evil.com:.x.allowed.com"})})).error, "");
  EXPECT_NE(of("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n").error, "");
  EXPECT_NE(of("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n").error, "");
  EXPECT_NE(of("GET / HTTP/1.1\r\nno colon here\r\n\r\n").error, "");
  auto no_host = of("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(no_host.kind, K::http);
  EXPECT_TRUE(no_host.name.empty());
  EXPECT_EQ(of("SSH-2.0-OpenSSH_9.2\r\n").kind, K::other);
  EXPECT_EQ(of(Bytes{0, 1, 2, 3}).kind, K::other);
  EXPECT_EQ(of(std::string(kWireHeadMax, 'A')).kind, K::other);
  EXPECT_NE(of("GET / HTTP/1.1\r\n" + std::string(kWireHeadMax, 'a')).error, "") << "headers that never end";
}

// An allowed request goes on as the only one of its connection.
TEST(WireName, AnAllowedHttpRequestAsksTheServerToCloseAfterIt) {
  std::string req =
      "POST /u HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"
      "Keep-Alive: timeout=5\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\nHost: evil\r\n\r\n";
  Bytes head(req.begin(), req.end());
  auto w = wire_name(head);
  ASSERT_EQ(w.kind, K::http);
  ASSERT_TRUE(w.error.empty()) << w.error;
  auto out = one_request_only(head, w);
  std::string o(out.begin(), out.end());
  EXPECT_EQ(o, "POST /u HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
               "bodyGET / HTTP/1.1\r\nHost: evil\r\n\r\n");
  Bytes bare{'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '0', '\r', '\n', '\r', '\n'};
  auto b = one_request_only(bare, wire_name(bare));
  EXPECT_EQ(std::string(b.begin(), b.end()), "GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
}

// The splice carries both directions and passes a half-close on.
TEST(WireName, SpliceCarriesBothWaysAndTheHalfClose) {
  int a[2], b[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
  std::atomic<bool> stop{false};
  SpliceTotals t;
  std::thread relay([&] { t = splice_both_ways(a[1], b[0], stop, 5000); });
  std::string big(300000, 'x');
  std::thread writer([&] {
    size_t off = 0;
    while (off < big.size()) {
      ssize_t n = write(a[0], big.data() + off, big.size() - off);
      if (n > 0) off += static_cast<size_t>(n);
      else usleep(1000);
    }
    shutdown(a[0], SHUT_WR);
  });
  std::string got;
  char buf[65536];
  for (;;) {
    ssize_t n = read(b[1], buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    else usleep(1000);
  }
  writer.join();
  EXPECT_EQ(got.size(), big.size());
  ASSERT_EQ(write(b[1], "back", 4), 4);
  shutdown(b[1], SHUT_WR);
  std::string back;
  for (;;) {
    ssize_t n = read(a[0], buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) back.append(buf, static_cast<size_t>(n));
    else usleep(1000);
  }
  relay.join();
  EXPECT_EQ(back, "back");
  EXPECT_EQ(t.a_to_b, big.size());
  EXPECT_EQ(t.b_to_a, 4u);
  for (int fd : {a[0], a[1], b[0], b[1]}) close(fd);
}

}  // namespace
}  // namespace agentcage::core
