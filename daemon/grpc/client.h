// SPDX-License-Identifier: Apache-2.0
// Client side of the daemon's Unix-socket API, for the CLI.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "core/base/paths.h"
#include "core/base/result.h"

namespace agentcage::grpcapi {

using core::kDefaultSocket;

// A channel to the daemon, or an error saying nobody listens there.
core::Result<std::shared_ptr<grpc::Channel>> connect_daemon(const std::string& socket_path);
// True when a daemon answers on socket_path (quick connect probe, no RPC).
bool daemon_listening(const std::string& socket_path);
// "rpc(Create): PERMISSION_DENIED: message" as an Error.
core::Error rpc_error(const char* rpc, const grpc::Status& st);

}  // namespace agentcage::grpcapi
