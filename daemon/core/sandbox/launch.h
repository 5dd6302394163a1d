// SPDX-License-Identifier: Apache-2.0
// The launch socket: how a client hands agentcaged what the command it asked for gets
// from the client itself (stdio, --pass-fd descriptors) and then supervises that command.
//
// After CreateSandbox with `launch` set, the client connects to launch_socket_path() (a
// SOCK_SEQPACKET socket beside the control socket) and sends one packet: the sandbox id,
// with its descriptors 0, 1, 2 and the --pass-fd ones as SCM_RIGHTS. The daemon starts
// the command and answers STARTED or ERROR (SupervisorFrame, launcher.h); the connection
// itself then goes to the sandbox's init, so signals (SIGNAL frames) and the exit status
// (the EXIT frame) travel between the client and the init directly. Neither a restart nor
// the death of the daemon interrupts a run; the client's death ends it (the init sees
// the connection close and ends the namespace).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/base/unique_fd.h"
#include "core/sandbox/sandbox_registry.h"

namespace agentcage::core {

std::string launch_socket_path(const std::string& control_socket);

// Daemon side: one accepted connection of `peer` (SO_PEERCRED), served to the end of the
// handover (the run itself is the init's). Never throws, never blocks past a 5 s receive.
void serve_launch(SandboxRegistry& registry, UniqueFd conn, const Peer& peer);

// Client side: connects, hands over 0-2 and `pass_fds` for sandbox `id`. The connection,
// ready for supervise_launch().
Result<UniqueFd> send_launch(const std::string& control_socket, const std::string& id, const std::vector<int>& pass_fds);

// Client side: relays SIGINT, TERM, HUP, QUIT and WINCH to the command (block them with
// block_forwarded_signals() before any thread starts) until the run ends. The command's
// shell-style status, or the launch's error (its exit status in *status: 127/126 for a
// command that cannot be executed, 1 otherwise).
Result<int> supervise_launch(int conn, int* status);

}  // namespace agentcage::core
