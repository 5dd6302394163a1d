// SPDX-License-Identifier: Apache-2.0
// A direct JSON writer for agentcage.v1.Event: the same output as protobuf's JSON printer
// with preserve_proto_field_names (proto3 rules: default values omitted, 64-bit integers
// as strings, a set oneof message printed even when empty, fields in number order), at a
// fraction of the cost: the printer goes through reflection and a type resolver and
// costs several microseconds per event, more than the kernel side spends recording it.
// Kernel bytes (`bytes` fields) are written as text: valid UTF-8 as is, other bytes as
// \udcXX (lossless; see the writer), never base64 as protobuf's printer would.
#pragma once

#include <string>
#include <string_view>

#include "core/base/result.h"

#include "agentcage/v1/event.pb.h"

namespace agentcage::core {

// Appends one JSON object (no newline) to out.
void append_event_json(const v1::Event& ev, std::string& out);

// Any other message (sandboxes, process trees) in the same JSON conventions, by reflection.
std::string message_json(const google::protobuf::Message& m);

// The inverse, losslessly (\udcXX back to the byte): reads what the writers above write.
// Errors name the byte offset. Unknown fields are errors.
Status message_from_json(std::string_view json, google::protobuf::Message* m);

}  // namespace agentcage::core
