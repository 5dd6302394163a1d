// SPDX-License-Identifier: Apache-2.0
#include "grpc/uds_server.h"

#include "core/sandbox/launch.h"
#include "grpc/status_interceptor.h"

#include <grpcpp/server_posix.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>

namespace agentcage::grpcapi {

void PeerTable::set(int fd, core::Peer p) {
  std::lock_guard lk(mu_);
  peers_[fd] = p;
}

std::optional<core::Peer> PeerTable::lookup(const std::string& grpc_peer) const {
  if (grpc_peer.rfind("fd:", 0) != 0) return std::nullopt;
  int fd = -1;
  try {
    fd = std::stoi(grpc_peer.substr(3));
  } catch (...) {
    return std::nullopt;
  }
  std::lock_guard lk(mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

core::Result<std::unique_ptr<UdsServer>> UdsServer::start(const std::string& path,
                                                          std::vector<grpc::Service*> services, PeerTable* peers,
                                                          LaunchHandler on_launch) {
  std::unique_ptr<UdsServer> s(new UdsServer());
  s->peers_ = peers;
  s->path_ = path;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return core::error("socket path too long: " + path);
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return core::sys_error("mkdir(" + dir.string() + ")", ec.value());
  ::chmod(dir.c_str(), 0755);

  s->listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->listen_fd_) return core::sys_error("socket(AF_UNIX)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  // A stale socket from a killed daemon: remove it only if nobody answers on it.
  if (::access(path.c_str(), F_OK) == 0) {
    core::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return core::error("another agentcaged is already serving " + path, "stop it first, or use --socket");
    ::unlink(path.c_str());
  }
  if (::bind(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return core::sys_error("bind(" + path + ")");
  ::chmod(path.c_str(), 0666);
  if (::listen(s->listen_fd_.get(), 64) != 0) return core::sys_error("listen(" + path + ")");
  if (on_launch) {
    // Same stale-socket rule: the control socket above was free, so is this one's name.
    s->launch_path_ = core::launch_socket_path(path);
    sockaddr_un la{};
    if (s->launch_path_.size() >= sizeof la.sun_path) return core::error("socket path too long: " + s->launch_path_);
    la.sun_family = AF_UNIX;
    std::memcpy(la.sun_path, s->launch_path_.c_str(), s->launch_path_.size());
    ::unlink(s->launch_path_.c_str());
    s->launch_fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s->launch_fd_) return core::sys_error("socket(AF_UNIX, SOCK_SEQPACKET)");
    if (::bind(s->launch_fd_.get(), reinterpret_cast<sockaddr*>(&la), sizeof la) != 0)
      return core::sys_error("bind(" + s->launch_path_ + ")");
    ::chmod(s->launch_path_.c_str(), 0666);
    if (::listen(s->launch_fd_.get(), 64) != 0) return core::sys_error("listen(" + s->launch_path_ + ")");
    s->on_launch_ = std::move(on_launch);
  }
  s->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->wake_fd_) return core::sys_error("eventfd");

  grpc::ServerBuilder b;
  for (auto* svc : services) b.RegisterService(svc);
  b.SetMaxReceiveMessageSize(4 << 20);
  b.experimental().SetInterceptorCreators(status_interceptors());
  s->server_ = b.BuildAndStart();
  if (!s->server_) return core::error("grpc::ServerBuilder::BuildAndStart failed");
  s->acceptor_ = std::thread([p = s.get()] { p->accept_loop(); });
  spdlog::info("serving on unix:{}", path);
  return s;
}

void UdsServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd fds[3] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}, {launch_fd_.get(), POLLIN, 0}};
    if (::poll(fds, launch_fd_ ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll(control socket): {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (launch_fd_ && (fds[2].revents & POLLIN)) {
      core::UniqueFd conn(::accept4(launch_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      ucred cred{};
      socklen_t clen = sizeof cred;
      if (conn && ::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
        on_launch_(std::move(conn),
                   core::Peer{cred.pid, cred.uid, cred.gid, core::SandboxRegistry::sandboxed_at_accept(cred.pid)});
    }
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    // Recorded before gRPC sees the fd, so no call can arrive without credentials; the
    // sandbox question is answered now, while the connecting process must still be there.
    peers_->set(fd, core::Peer{cred.pid, cred.uid, cred.gid, core::SandboxRegistry::sandboxed_at_accept(cred.pid)});
    int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    grpc::AddInsecureChannelFromFd(server_.get(), fd);
  }
}

void UdsServer::shutdown() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::unlink(path_.c_str());
  if (!launch_path_.empty()) ::unlink(launch_path_.c_str());
}

UdsServer::~UdsServer() { shutdown(); }

}  // namespace agentcage::grpcapi
