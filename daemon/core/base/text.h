// SPDX-License-Identifier: Apache-2.0
// Kernel bytes on an operator's terminal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agentcage::core {

// `s` made safe to print on a terminal, one line, and reversible: valid printable UTF-8
// passes; '\\' becomes "\\\\"; \t \n \r become "\\t" "\\n" "\\r"; other C0 controls, DEL
// and bytes that are not valid UTF-8 become "\\xNN"; C1 controls (U+0080..U+009F, which
// terminals honour as CSI/OSC introducers) become "\\u00NN". So an argv or file name can
// neither run an escape sequence on the operator's terminal nor start a forged line.
std::string escape_text(std::string_view s);
// The same, except that '\\' passes as it is: for messages that quote text already escaped
// (a nested error) next to raw input. Printable and one line, but not reversible.
std::string printable_text(std::string_view s);

// Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF), 0 when p[0] does not start one. Shared by the text and JSON escapers.
size_t utf8_sequence_length(const unsigned char* p, size_t n);

// A decimal unsigned integer, strictly: digits only, at least one, no sign, no overflow.
std::optional<uint64_t> parse_u64(std::string_view s);

// Lower-case hex of raw bytes ("0aff"): hashes, keys and ids in text form.
std::string to_hex(std::string_view bytes);

// Sequence numbers are SQLite INTEGERs: at most 2^63-1. Larger values are out of range
// everywhere (CLI, requests, collector), never wrapped to a negative number.
inline constexpr uint64_t kMaxSeq = 9223372036854775807ull;

}  // namespace agentcage::core
