// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/launch.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstring>

#include "core/confine/launcher.h"

namespace agentcage::core {
namespace {

constexpr size_t kIdLen = 16;
constexpr size_t kMaxFds = 3 + kMaxLaunchFds;
constexpr size_t kMaxErrorText = 4000;

void send_frame(int fd, int32_t type, int32_t value, const std::string& text = {}) {
  std::string pkt(sizeof(SupervisorFrame), '\0');
  SupervisorFrame f{type, value};
  std::memcpy(pkt.data(), &f, sizeof f);
  pkt += text.substr(0, kMaxErrorText);
  (void)!::send(fd, pkt.data(), pkt.size(), MSG_NOSIGNAL);
}

}  // namespace

std::string launch_socket_path(const std::string& control_socket) { return control_socket + ".launch"; }

void serve_launch(SandboxRegistry& registry, UniqueFd conn, const Peer& peer) {
  timeval tv{5, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char id[kIdLen + 1] = {};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{id, kIdLen + 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = sizeof ctl;
  ssize_t n = ::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC);
  // Every descriptor received is ours to close, whatever else is wrong with the packet.
  std::vector<UniqueFd> owned;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      owned.emplace_back(fd);
    }
  }
  auto refuse = [&](const std::string& why) {
    spdlog::warn("launch from pid {} (uid {}) refused: {}", peer.pid, peer.uid, why);
    send_frame(conn.get(), kFrameError, 1, why);
  };
  if (n < 0) return refuse(std::string("no launch request received: ") + strerror(errno));
  if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
    return refuse("launch request too large (at most " + std::to_string(kMaxFds) + " descriptors)");
  if (n != static_cast<ssize_t>(kIdLen)) return refuse("launch request: expected the 16-digit sandbox id");
  if (!SandboxRegistry::may_change(peer))
    return refuse("a process inside a sandbox (or one gone when its connection was accepted) may not launch one");
  std::vector<int> fds;
  for (const auto& f : owned) fds.push_back(f.get());
  auto pid = registry.launch(peer, std::string(id, kIdLen), conn.get(), fds);
  if (!pid) {
    int status = exec_failure_status(pid.error()).value_or(1);
    spdlog::warn("sandbox {}: launch failed: {}", std::string(id, kIdLen), pid.error().message());
    send_frame(conn.get(), kFrameError, status, pid.error().message());
    return;
  }
  send_frame(conn.get(), kFrameStarted, static_cast<int32_t>(*pid));
  // Our copies close here; the init holds the connection and the command its descriptors.
}

Result<UniqueFd> send_launch(const std::string& control_socket, const std::string& id, const std::vector<int>& pass_fds) {
  std::string path = launch_socket_path(control_socket);
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return error("launch socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return sys_error("socket(AF_UNIX, SOCK_SEQPACKET)");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return sys_error("connect(" + path + ")", errno, "agentcaged serves the launch socket beside its control socket");
  if (pass_fds.size() > kMaxLaunchFds) return error("--pass-fd: at most " + std::to_string(kMaxLaunchFds) + " descriptors");
  std::vector<int> send = {0, 1, 2};
  send.insert(send.end(), pass_fds.begin(), pass_fds.end());
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  iovec iov{const_cast<char*>(id.data()), id.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * send.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * send.size());
  std::memcpy(CMSG_DATA(c), send.data(), sizeof(int) * send.size());
  if (::sendmsg(fd.get(), &msg, MSG_NOSIGNAL) < 0) return sys_error("sendmsg(" + path + ")");
  return fd;
}

Result<int> supervise_launch(int conn, int* status) {
  *status = 1;
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&set, s);
  UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd) return sys_error("signalfd");
  std::optional<int> exit_status;
  std::optional<std::string> failure;
  for (;;) {
    pollfd fds[2] = {{conn, POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return sys_error("poll");
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd.get(), &si, sizeof si) == sizeof si) send_frame(conn, kFrameSignal, static_cast<int32_t>(si.ssi_signo));
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char buf[sizeof(SupervisorFrame) + kMaxErrorText];
    ssize_t n = ::recv(conn, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the daemon and the init are done with the connection
    if (static_cast<size_t>(n) < sizeof(SupervisorFrame)) continue;
    SupervisorFrame f;
    std::memcpy(&f, buf, sizeof f);
    if (f.type == kFrameExit) exit_status = f.value;
    if (f.type == kFrameError) {
      failure = std::string(buf + sizeof f, static_cast<size_t>(n) - sizeof f);
      *status = f.value;
    }
  }
  if (failure) return error(*failure);
  if (!exit_status) {
    // Only a SIGKILL ends the init before it reports (the sandbox's cgroup killed by
    // agentcaged, the OOM killer): the command died with it.
    *status = 128 + SIGKILL;
    return error("the sandbox was killed before its command ended (its init got SIGKILL)",
                 "see `agentcage events --kind sandbox` for why");
  }
  *status = *exit_status;
  return *exit_status;
}

}  // namespace agentcage::core
