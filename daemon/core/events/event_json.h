// SPDX-License-Identifier: Apache-2.0
// A direct JSON writer for agentcage.v1.Event: the same output as protobuf's JSON printer
// with preserve_proto_field_names (proto3 rules: default values omitted, 64-bit integers
// as strings, a set oneof message printed even when empty, fields in number order), at a
// fraction of the cost: the printer goes through reflection and a type resolver and
// costs several microseconds per event, more than the kernel side spends recording it.
// Kinds this writer does not know (net, violation) fall back to the protobuf printer.
#pragma once

#include <string>

#include "agentcage/v1/event.pb.h"

namespace agentcage::core {

// Appends one JSON object (no newline) to out.
void append_event_json(const v1::Event& ev, std::string& out);

}  // namespace agentcage::core
