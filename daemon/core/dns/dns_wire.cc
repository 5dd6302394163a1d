// SPDX-License-Identifier: Apache-2.0
#include "core/dns/dns_wire.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace agentcage::core {
namespace {

constexpr size_t kHeader = 12;

uint16_t u16(std::span<const uint8_t> m, size_t off) { return static_cast<uint16_t>(m[off] << 8 | m[off + 1]); }

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// A (possibly compressed) name at `off`; *next gets the offset after it in place.
// Pointers must point backwards (a loop cannot form) and the name stays within 255 bytes.
Result<std::string> read_name(std::span<const uint8_t> m, size_t off, size_t* next) {
  std::string name;
  size_t pos = off, wire = 0;
  bool jumped = false;
  for (int hops = 0;; ++hops) {
    if (pos >= m.size()) return error("DNS name runs past the message");
    uint8_t len = m[pos];
    if ((len & 0xc0) == 0xc0) {
      if (pos + 1 >= m.size()) return error("DNS compression pointer runs past the message");
      size_t target = static_cast<size_t>(len & 0x3f) << 8 | m[pos + 1];
      if (target >= pos || hops > 127) return error("DNS compression pointer does not point backwards");
      if (!jumped) *next = pos + 2;
      jumped = true;
      pos = target;
      continue;
    }
    if (len & 0xc0) return error(fmt::format("DNS label type 0x{:x} is not supported", len & 0xc0));
    if (len == 0) {
      if (!jumped) *next = pos + 1;
      return name;
    }
    if (pos + 1 + len > m.size()) return error("DNS label runs past the message");
    wire += 1u + len;
    if (wire > 255) return error("DNS name is longer than 255 bytes");
    if (!name.empty()) name += '.';
    // A '.' inside a label is another name than the dotted text would say
    // ("registry.npmjs" + "org" is not registry.npmjs.org): escaped, so it matches no rule.
    for (size_t i = 0; i < len; ++i) {
      char c = static_cast<char>(m[pos + 1 + i]);
      if (c == '.' || c == '\\') name += '\\';
      name += c;
    }
    pos += 1u + len;
  }
}

}  // namespace

Result<DnsQuestion> parse_dns_query(std::span<const uint8_t> msg) {
  if (msg.size() < kHeader) return error(fmt::format("DNS message of {} bytes is shorter than its header", msg.size()));
  DnsQuestion q;
  q.id = u16(msg, 0);
  uint16_t flags = u16(msg, 2);
  if (flags & 0x8000) return error("not a DNS query (QR is set)");
  if (((flags >> 11) & 0xf) != 0) return error(fmt::format("DNS opcode {} is not QUERY", (flags >> 11) & 0xf));
  q.recursion_desired = flags & 0x0100;
  if (u16(msg, 4) != 1) return error(fmt::format("DNS query with {} questions (one is allowed)", u16(msg, 4)));
  size_t next = 0;
  auto name = read_name(msg, kHeader, &next);
  if (!name) return std::unexpected(name.error());
  if (next + 4 > msg.size()) return error("DNS question runs past the message");
  q.name = std::move(*name);
  q.type = u16(msg, next);
  q.qclass = u16(msg, next + 2);
  q.end = next + 4;
  return q;
}

std::vector<uint8_t> dns_reply_without_records(std::span<const uint8_t> query, const DnsQuestion& q, uint8_t rcode) {
  std::vector<uint8_t> out(query.begin(), query.begin() + static_cast<std::ptrdiff_t>(q.end));
  // QR, the query's opcode and RD, RA; rcode. One question, no records (EDNS dropped).
  out[2] = static_cast<uint8_t>(0x80 | (query[2] & 0x79));
  out[3] = static_cast<uint8_t>(0x80 | (rcode & 0x0f));
  out[4] = 0;
  out[5] = 1;
  std::fill(out.begin() + 6, out.begin() + kHeader, 0);
  return out;
}

Result<DnsAnswer> parse_dns_answer(std::span<const uint8_t> msg, const DnsQuestion& q) {
  if (msg.size() < kHeader) return error("DNS answer shorter than its header");
  DnsAnswer a;
  a.id = u16(msg, 0);
  uint16_t flags = u16(msg, 2);
  if (!(flags & 0x8000)) return error("not a DNS response (QR is clear)");
  a.rcode = static_cast<uint8_t>(flags & 0x0f);
  a.truncated = flags & 0x0200;
  uint16_t qd = u16(msg, 4), an = u16(msg, 6);
  if (qd != 1) return error(fmt::format("DNS response with {} questions", qd));
  size_t pos = 0;
  auto name = read_name(msg, kHeader, &pos);
  if (!name) return std::unexpected(name.error());
  if (pos + 4 > msg.size()) return error("DNS question runs past the message");
  if (lower(*name) != lower(q.name) || u16(msg, pos) != q.type || u16(msg, pos + 2) != q.qclass)
    return error("DNS response is for another question");
  pos += 4;
  std::set<std::string> names{lower(q.name)};  // the name and its CNAME targets
  for (uint16_t i = 0; i < an; ++i) {
    size_t next = 0;
    auto owner = read_name(msg, pos, &next);
    if (!owner) return std::unexpected(owner.error());
    if (next + 10 > msg.size()) return error("DNS record runs past the message");
    uint16_t type = u16(msg, next), klass = u16(msg, next + 2);
    uint32_t ttl = static_cast<uint32_t>(u16(msg, next + 4)) << 16 | u16(msg, next + 6);
    uint16_t rdlen = u16(msg, next + 8);
    size_t rdata = next + 10;
    if (rdata + rdlen > msg.size()) return error("DNS record data runs past the message");
    bool ours = klass == 1 && names.count(lower(*owner));
    if (ours && type == kDnsTypeCname) {
      size_t after = 0;
      auto target = read_name(msg, rdata, &after);
      if (!target) return std::unexpected(target.error());
      names.insert(lower(*target));
    } else if (ours && type == kDnsTypeA && rdlen == 4) {
      DnsAddress d;
      d.v4 = true;
      d.addr[10] = d.addr[11] = 0xff;
      std::copy_n(&msg[rdata], 4, d.addr.begin() + 12);
      d.ttl = ttl & 0x7fffffff;  // RFC 2181: a TTL with the top bit set is 0
      if (ttl & 0x80000000) d.ttl = 0;
      a.addresses.push_back(d);
    } else if (ours && type == kDnsTypeAaaa && rdlen == 16) {
      DnsAddress d;
      std::copy_n(&msg[rdata], 16, d.addr.begin());
      d.ttl = (ttl & 0x80000000) ? 0 : ttl;
      a.addresses.push_back(d);
    }
    pos = rdata + rdlen;
  }
  return a;
}

std::string dns_type_name(uint16_t type) {
  switch (type) {
    case 1: return "A";
    case 2: return "NS";
    case 5: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 15: return "MX";
    case 16: return "TXT";
    case 28: return "AAAA";
    case 33: return "SRV";
    case 64: return "SVCB";
    case 65: return "HTTPS";
    case 255: return "ANY";
  }
  return "TYPE" + std::to_string(type);
}

std::string dns_rcode_name(uint8_t rcode) {
  switch (rcode) {
    case 0: return "NOERROR";
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 3: return "NXDOMAIN";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
  }
  return "RCODE" + std::to_string(rcode);
}

std::string address_text(const DnsAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.v4) inet_ntop(AF_INET, &a.addr[12], buf, sizeof buf);
  else inet_ntop(AF_INET6, a.addr.data(), buf, sizeof buf);
  return buf;
}

}  // namespace agentcage::core
