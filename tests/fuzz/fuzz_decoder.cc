// SPDX-License-Identifier: Apache-2.0
// The ring-buffer record decoder on arbitrary bytes (a record is whatever the kernel side
// or a corrupted ring hands over). Properties: never a crash or undefined behaviour (this
// binary runs under ASan and UBSan), an error names what was wrong, every event it makes
// prints as valid UTF-8 JSON and text whatever bytes the record held, and decoding into a
// reused event (what the reader thread does for every record) gives exactly the event a
// fresh decode gives, so no field of an earlier record leaks into the next.
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/events/decoder.h"
#include "fuzz_common.h"

using namespace agentcage;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const core::DecodeContext ctx{"node1", "0123456789abcdef0123456789abcdef", 1'700'000'000'000'000'000};
  static v1::Event reused;  // holds the previous input's event, as the reader's does
  std::span<const std::byte> rec(reinterpret_cast<const std::byte*>(data), size);
  auto ev = core::decode_record(rec, ctx);
  auto st = core::decode_record_into(rec, ctx, reused);
  fuzz::check(ev.has_value() == st.has_value(), "decode_record and decode_record_into disagree on success");
  if (!ev) {
    fuzz::check(!ev.error().context.empty(), "a decode error says nothing");
    fuzz::check(fuzz::valid_utf8(ev.error().message()), "a decode error is not valid UTF-8");
    return 0;
  }
  auto json = core::to_json_line(*ev);
  fuzz::check(fuzz::valid_utf8(json), "event JSON is not valid UTF-8: " + json);
  fuzz::check(fuzz::valid_utf8(core::to_text_line(*ev)), "event text is not valid UTF-8");
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  if (!d.Compare(*ev, reused)) fuzz::fail("decoding into a reused event differs from a fresh decode:\n" + diff);
  return 0;
}
