// SPDX-License-Identifier: Apache-2.0
#include "core/base/text.h"

#include <fmt/format.h>

#include <iterator>

namespace agentcage::core {

size_t utf8_sequence_length(const unsigned char* p, size_t n) {
  unsigned char c = p[0];
  size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (!len || len > n) return 0;
  for (size_t i = 1; i < len; ++i)
    if ((p[i] & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && p[1] < 0xa0) return 0;   // overlong
  if (c == 0xed && p[1] >= 0xa0) return 0;  // surrogate
  if (c == 0xf0 && p[1] < 0x90) return 0;   // overlong
  if (c == 0xf4 && p[1] >= 0x90) return 0;  // past U+10FFFF
  return len;
}

namespace {

std::string escape(std::string_view s, bool double_backslash) {
  std::string out;
  out.reserve(s.size());
  auto out_it = std::back_inserter(out);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = p[i];
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\' && double_backslash) out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x80) {
      fmt::format_to(out_it, "\\x{:02x}", c);
    } else if (size_t len = utf8_sequence_length(p + i, s.size() - i); len == 0) {
      fmt::format_to(out_it, "\\x{:02x}", c);
    } else if (c == 0xc2 && p[i + 1] < 0xa0) {
      fmt::format_to(out_it, "\\u{:04x}", p[i + 1]);
      i += 1;
    } else {
      out.append(s.substr(i, len));
      i += len - 1;
    }
  }
  return out;
}

}  // namespace

std::string escape_text(std::string_view s) { return escape(s, true); }
std::string printable_text(std::string_view s) { return escape(s, false); }

std::optional<uint64_t> parse_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

}  // namespace agentcage::core
