// SPDX-License-Identifier: Apache-2.0
// Kernel bytes on a terminal: nothing raw that a terminal acts on, nothing that starts a
// new line, and the escaping is unambiguous.
#include "core/base/text.h"

#include <gtest/gtest.h>

#include <string>

namespace agentcage::core {
namespace {

TEST(Text, EscapesWhatATerminalWouldActOn) {
  EXPECT_EQ(escape_text("plain /usr/bin/ls -la"), "plain /usr/bin/ls -la");
  EXPECT_EQ(escape_text("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(escape_text("a\nVIOLATION fake"), "a\\nVIOLATION fake");
  EXPECT_EQ(escape_text("\x1b[2J\x07\x7f\t\r"), "\\x1b[2J\\x07\\x7f\\t\\r");
  EXPECT_EQ(escape_text(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(escape_text("bad\xffname"), "bad\\xffname");
  EXPECT_EQ(escape_text("\xc2\x9b" "31m"), "\\u009b31m");          // C1 CSI, as UTF-8
  EXPECT_EQ(escape_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");        // a UTF-16 surrogate
  EXPECT_EQ(escape_text("\xc0\xaf"), "\\xc0\\xaf");                 // overlong '/'
  EXPECT_EQ(escape_text("back\\slash \\x41"), "back\\\\slash \\\\x41");  // cannot forge an escape
}

TEST(Text, NoByteValueSurvivesRawUnlessPrintable) {
  for (int b = 0; b < 256; ++b) {
    std::string out = escape_text(std::string(1, static_cast<char>(b)));
    for (unsigned char c : out) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << b << " -> " << out;
  }
}

TEST(Text, Utf8SequenceLength) {
  auto len = [](std::string s) { return utf8_sequence_length(reinterpret_cast<const unsigned char*>(s.data()), s.size()); };
  EXPECT_EQ(len("\xc3\xa9"), 2u);
  EXPECT_EQ(len("\xe2\x82\xac"), 3u);
  EXPECT_EQ(len("\xf0\x9f\x98\x80"), 4u);
  EXPECT_EQ(len("\xf4\x90\x80\x80"), 0u);  // past U+10FFFF
  EXPECT_EQ(len("\xe0\x80\xaf"), 0u);      // overlong
  EXPECT_EQ(len("\xe2\x82"), 0u);          // cut short
  EXPECT_EQ(len("a"), 0u);                 // ASCII is not a multi-byte sequence
}

}  // namespace
}  // namespace agentcage::core
