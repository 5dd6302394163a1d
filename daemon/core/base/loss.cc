// SPDX-License-Identifier: Apache-2.0
#include "core/base/loss.h"

#include <string>

#include "core/base/clock.h"

namespace agentcage::core {

v1::Event loss_event(std::string_view reason, uint64_t count, std::string_view where, std::string_view node,
                     std::string_view sandbox_id) {
  v1::Event ev;
  ev.set_time_ns(wall_ns());
  if (!node.empty()) ev.set_node(std::string(node));
  if (!sandbox_id.empty()) ev.set_sandbox_id(std::string(sandbox_id));
  auto* l = ev.mutable_loss();
  l->set_count(count);
  l->set_reason(std::string(reason));
  l->set_where(std::string(where));
  return ev;
}

}  // namespace agentcage::core
