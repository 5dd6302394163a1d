// SPDX-License-Identifier: Apache-2.0
// The name a TCP connection asks for in its first bytes, and the splice that carries an
// allowed one on (dns_guard.h's name check).
//
// An address learned from an allowed name may serve other names too: a CDN fronts
// thousands of sites on one address, and a client can ask it for any of them (domain
// fronting). So a connect to a learned address on port 443 or 80 is redirected in the
// kernel (bpf/net.bpf.c, ac_name_redirect) to agentcage, which reads the TLS
// ClientHello's server_name or the HTTP request's Host before a byte reaches the server.
// What this cannot see: a Host header inside TLS (only the SNI is in the clear: where a
// CDN routes by the inner Host, an allowed SNI can front another site). Plain HTTP is
// held to one request per connection (one_request_only), so every request is read.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace agentcage::core {

struct WireName {
  enum class Kind {
    incomplete,  // not enough bytes yet to decide
    tls,         // a TLS ClientHello
    http,        // an HTTP/1.x request
    other,       // neither: refused on the name-checked ports
  } kind = Kind::incomplete;
  std::string name;   // the SNI host_name or the Host (lower case, no port, no final dot)
  bool ech = false;   // TLS: an encrypted_client_hello extension (the SNI is only the outer name)
  std::string error;  // malformed: what is wrong (kind is then tls/http/other)
  size_t header_end = 0;  // HTTP: the offset past the request's CRLFCRLF
};

// At most this many bytes are read before deciding: a ClientHello in one TLS record
// (16 KiB + header) or HTTP request headers.
inline constexpr size_t kWireHeadMax = 16384 + 5;

// Pure: the name in `head`, the connection's first bytes as received so far.
WireName wire_name(std::span<const uint8_t> head);

// An allowed HTTP request as sent on: its Connection, Keep-Alive, Upgrade and
// Proxy-Connection headers replaced by "Connection: close", so the server answers this
// one request and closes: a second one on the connection (kept alive, pipelined, or an
// h2c upgrade) cannot ask for another Host unread. What followed the headers (a body,
// pipelined bytes) is kept as sent. `w` is wire_name(head) of kind http.
std::vector<uint8_t> one_request_only(std::span<const uint8_t> head, const WireName& w);

// Carries bytes both ways between a and b with splice(2) through pipes (no copy through
// user space) until both directions end or `stop` is set; a half-close is passed on.
// Both descriptors non-blocking. Returns the bytes carried a->b and b->a.
struct SpliceTotals {
  uint64_t a_to_b = 0, b_to_a = 0;
};
SpliceTotals splice_both_ways(int a, int b, const std::atomic<bool>& stop, int idle_timeout_ms);

}  // namespace agentcage::core
