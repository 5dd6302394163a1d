// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <string_view>

#include "agentcage/v1/event.pb.h"

namespace agentcage::core {

// The one constructor of a Loss event (kernel ring full, a decode error, a stuck
// subscriber, the store failing, a daemon restart, a replaced store...): what was lost
// (reason), how many (count; 0 when unknown) and where, stamped with the wall clock now.
// Callers add the fields only their kind has (through_seq, policy) to the result.
v1::Event loss_event(std::string_view reason, uint64_t count, std::string_view where, std::string_view node = {},
                     std::string_view sandbox_id = {});

}  // namespace agentcage::core
