// SPDX-License-Identifier: Apache-2.0
// A gRPC server on a Unix socket whose callers are identified by the kernel.
//
// gRPC's own Unix listener hides the accepted socket, so the peer's credentials
// (SO_PEERCRED) are lost. We accept connections ourselves, read SO_PEERCRED, remember it
// under the connection's fd, and hand the fd to gRPC (AddInsecureChannelFromFd). gRPC
// names such a connection's peer "fd:<n>", which maps a call back to its credentials.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/base/result.h"
#include "core/sandbox/sandbox_registry.h"
#include "core/base/unique_fd.h"

namespace agentcage::grpcapi {

class PeerTable {
 public:
  void set(int fd, core::Peer p);
  // The credentials of the connection a call arrived on, from ServerContext::peer().
  std::optional<core::Peer> lookup(const std::string& grpc_peer) const;

 private:
  mutable std::mutex mu_;
  std::map<int, core::Peer> peers_;
};

class UdsServer {
 public:
  // Creates the socket (parent directory 0755, socket 0666: every local user may connect;
  // what each may do is decided per call from its credentials) and starts serving.
  // With `on_launch`: also the launch socket (core::launch_socket_path(path), 0666 as
  // well), whose connections are handed to it with their credentials, one at a time.
  using LaunchHandler = std::function<void(core::UniqueFd conn, const core::Peer& peer)>;
  static core::Result<std::unique_ptr<UdsServer>> start(const std::string& path,
                                                        std::vector<grpc::Service*> services, PeerTable* peers,
                                                        LaunchHandler on_launch = {});
  ~UdsServer();
  void shutdown();

 private:
  UdsServer() = default;
  void accept_loop();

  std::string path_, launch_path_;
  core::UniqueFd listen_fd_;
  core::UniqueFd launch_fd_;  // the launch socket; empty without a handler
  LaunchHandler on_launch_;
  core::UniqueFd wake_fd_;  // eventfd to stop the accept loop
  std::unique_ptr<grpc::Server> server_;
  PeerTable* peers_ = nullptr;  // owned by the caller; outlives the server
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
};

}  // namespace agentcage::grpcapi
