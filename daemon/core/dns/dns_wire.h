// SPDX-License-Identifier: Apache-2.0
// The few pieces of the DNS wire format (RFC 1035) agentcage's resolver needs: the
// question of a query, a refusal built from it, and the addresses an answer gives for
// the name asked (following its CNAME chain). Pure; every length and compression pointer
// is checked, so any bytes give a result or an error, never a read out of bounds.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/base/result.h"

namespace agentcage::core {

inline constexpr uint16_t kDnsTypeA = 1, kDnsTypeCname = 5, kDnsTypeAaaa = 28;
inline constexpr uint8_t kDnsNoError = 0, kDnsServFail = 2, kDnsNxDomain = 3, kDnsRefused = 5;

struct DnsQuestion {
  uint16_t id = 0;
  std::string name;  // labels joined by '.', bytes as sent (may be anything: escape to show)
  uint16_t type = 0;
  uint16_t qclass = 0;
  bool recursion_desired = false;
  size_t end = 0;  // offset just past the question
};

// A query: QR clear, opcode QUERY, exactly one question.
Result<DnsQuestion> parse_dns_query(std::span<const uint8_t> msg);

// The reply to `q` with no records and `rcode` (REFUSED, SERVFAIL, ...).
std::vector<uint8_t> dns_reply_without_records(std::span<const uint8_t> query, const DnsQuestion& q, uint8_t rcode);

struct DnsAddress {
  std::array<uint8_t, 16> addr{};  // IPv4 as ::ffff:a.b.c.d
  bool v4 = false;
  uint32_t ttl = 0;
};

struct DnsAnswer {
  uint16_t id = 0;
  uint8_t rcode = 0;
  bool truncated = false;
  // A and AAAA records of the name asked or of a name its CNAME chain leads to; other
  // records (and any for unrelated names) are not taken.
  std::vector<DnsAddress> addresses;
};

// A response to `q`: QR set, the same question (name compared ignoring case).
Result<DnsAnswer> parse_dns_answer(std::span<const uint8_t> msg, const DnsQuestion& q);

std::string dns_type_name(uint16_t type);   // "A", "AAAA", ..., else the number
std::string dns_rcode_name(uint8_t rcode);  // "NOERROR", "NXDOMAIN", ..., else the number
std::string address_text(const DnsAddress& a);

}  // namespace agentcage::core
