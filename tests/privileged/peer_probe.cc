// SPDX-License-Identifier: Apache-2.0
// Issue 11 item 5: a connection to agentcaged laundered through a child that exits. The
// child connects to the control socket and hands the connection to its parent (here, a
// process inside a sandbox), then exits; the parent waits for it, so the pid the kernel
// named for the connection (SO_PEERCRED) is gone, and asks for a sandbox over it.
//   peer_probe SOCKET
// Exit 0: refused with PERMISSION_DENIED; 1: a sandbox was created (its id printed);
// 2: anything else (printed).
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "agentcage/v1/control.grpc.pb.h"

namespace {

int connect_unix(const char* path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return -1;
  return fd;
}

void send_fd(int via, int fd) {
  char byte = 'x', ctl[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&byte, 1};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  (void)sendmsg(via, &m, 0);
}

int recv_fd(int via) {
  char byte, ctl[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&byte, 1};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  if (recvmsg(via, &m, 0) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: peer_probe SOCKET\n");
    return 2;
  }
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) != 0) return 2;
  pid_t child = fork();
  if (child == 0) {
    int fd = connect_unix(argv[1]);
    if (fd < 0) _exit(3);
    send_fd(sp[1], fd);
    _exit(0);
  }
  int fd = recv_fd(sp[0]);
  int st = 0;
  waitpid(child, &st, 0);
  if (fd < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    std::printf("probe: could not connect to %s\n", argv[1]);
    return 2;
  }
  // The child is gone now (waited for): its pid names nothing.
  auto ch = grpc::CreateInsecureChannelFromFd("peer_probe", fd);
  auto stub = agentcage::v1::Control::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  agentcage::v1::CreateSandboxRequest req;
  req.add_argv("laundered");
  agentcage::v1::Sandbox sb;
  auto s = stub->CreateSandbox(&ctx, req, &sb);
  if (s.ok()) {
    std::printf("created %s\n", sb.id().c_str());
    return 1;
  }
  std::printf("refused %d: %s\n", static_cast<int>(s.error_code()), s.error_message().c_str());
  return s.error_code() == grpc::StatusCode::PERMISSION_DENIED ? 0 : 2;
}
