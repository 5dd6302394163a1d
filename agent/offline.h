// SPDX-License-Identifier: Apache-2.0
// `--db FILE`: reading a store file directly, without agentcaged, with the semantics of
// the daemon's Events service (the same filter, the same tree), so `events`, `tree` and
// `audit report` answer alike either way.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "agentcage/v1/control.pb.h"
#include "core/base/result.h"
#include "core/store/store.h"

namespace agentcage::cli {

// Opens FILE read-only; the error names the file (missing, unreadable, not a store).
// Reading needs no chain key; verifying a keyed store does (chain_key_path).
core::Result<std::unique_ptr<core::EventStore>> open_store_file(const std::string& path,
                                                                const std::string& chain_key_path = {});

// The events Events.Query would stream for `f`, in seq order, until fn returns false.
core::Status query_store(const core::EventStore& store, const v1::EventFilter& f,
                         const std::function<bool(const v1::Event&)>& fn);

// What Events.ProcessTree would answer for the sandbox.
core::Result<v1::ProcessTreeResponse> store_process_tree(const core::EventStore& store, const std::string& sandbox);

}  // namespace agentcage::cli
