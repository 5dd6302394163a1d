// SPDX-License-Identifier: Apache-2.0
#include "core/dns/dns_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <csignal>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/base/clock.h"
#include "core/base/text.h"
#include "core/base/unique_fd.h"
#include "core/base/mountinfo.h"
#include "core/dns/dns_wire.h"
#include "core/dns/name_check.h"

namespace agentcage::core {
namespace {

// Learned addresses one sandbox may hold at a time: a flood of distinct answers (a
// wildcard name under the agent's control) must not fill the kernel map for everyone.
constexpr size_t kMaxLearned = 4096;
constexpr size_t kMaxMessage = 65535;

uint64_t boot_ns() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// What a learned address may be reached by. An entry of any protocol is TCP: UDP to a
// name's address (QUIC on 443) carries a name the check never reads, so it needs an entry
// that says protocol: udp.
uint8_t proto_bits(NetProto p) { return p == NetProto::udp ? AC_NET_P_UDP : AC_NET_P_TCP; }

// The socket inode behind a local port, from /proc/net/<table> (0: not found).
uint64_t socket_inode(const std::string& table, uint16_t local_port, uint16_t remote_port) {
  std::ifstream in("/proc/net/" + table);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retr, uid, timeout;
    uint64_t inode = 0;
    if (!(f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode)) continue;
    auto port_of = [](const std::string& a) -> long {
      auto c = a.rfind(':');
      return c == std::string::npos ? -1 : std::strtol(a.c_str() + c + 1, nullptr, 16);
    };
    if (port_of(local) == local_port && (remote_port == 0 || port_of(remote) == remote_port)) return inode;
  }
  return 0;
}

void cgroup_pids(const std::string& dir, std::vector<uint32_t>& out, int depth = 0) {
  std::ifstream in(dir + "/cgroup.procs");
  for (uint32_t pid; in >> pid;) out.push_back(pid);
  if (depth > 8) return;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') cgroup_pids(dir + "/" + e->d_name, out, depth + 1);
  ::closedir(d);
}

// Which process of the sandbox holds the socket that asked: the client waits for its
// answer, so it is alive now. 0 when not found (the record then names only the sandbox).
uint32_t asking_pid(const std::string& cgroup, bool tcp, bool v6, uint16_t client_port, uint16_t guard_port) {
  if (cgroup.empty()) return 0;
  uint64_t inode = socket_inode(tcp ? (v6 ? "tcp6" : "tcp") : (v6 ? "udp6" : "udp"), client_port,
                                tcp ? guard_port : 0);
  if (!inode)
    inode = socket_inode(tcp ? (v6 ? "tcp" : "tcp6") : (v6 ? "udp" : "udp6"), client_port, tcp ? guard_port : 0);
  if (!inode) return 0;
  const std::string want = fmt::format("socket:[{}]", inode);
  std::vector<uint32_t> pids;
  cgroup_pids(cgroup, pids);
  char buf[64];
  for (uint32_t pid : pids) {
    std::string fds = fmt::format("/proc/{}/fd", pid);
    DIR* d = ::opendir(fds.c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      ssize_t n = ::readlinkat(dirfd(d), e->d_name, buf, sizeof buf);
      if (n > 0 && want == std::string_view(buf, static_cast<size_t>(n))) {
        ::closedir(d);
        return pid;
      }
    }
    ::closedir(d);
  }
  return 0;
}

uint64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// Waits for `events` on a non-blocking fd until the absolute deadline (mono_ms): one
// deadline for a whole exchange, so a peer trickling a byte at a time gains nothing.
bool wait_fd(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = mono_ms();
    if (now >= deadline) return false;
    pollfd pf{fd, events, 0};
    int r = ::poll(&pf, 1, static_cast<int>(deadline - now));
    if (r > 0) return true;
    if (r == 0 || errno != EINTR) return false;
  }
}

// An address as the kernel's net records spell it (SockAddr.address): IPv4 and
// IPv4-mapped IPv6 both as a.b.c.d.
std::string record_text(const std::array<uint8_t, 16>& addr) {
  DnsAddress a;
  a.addr = addr;
  a.v4 = std::all_of(addr.begin(), addr.begin() + 10, [](uint8_t b) { return b == 0; }) && addr[10] == 0xff &&
         addr[11] == 0xff;
  return address_text(a);
}

bool read_full(int fd, uint8_t* p, size_t n, uint64_t deadline) {
  while (n > 0) {
    if (!wait_fd(fd, POLLIN, deadline)) return false;
    ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_full(int fd, const uint8_t* p, size_t n, uint64_t deadline) {
  while (n > 0) {
    if (!wait_fd(fd, POLLOUT, deadline)) return false;
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The cookie of the client socket of a connection the name check accepted (its local end
// the accepted socket's peer, its remote end the accepted socket's own address): the key
// of its ac_name_orig entry.
// Exact lookup through sock_diag (no dump); an IPv6 socket connected to a v4-mapped
// address is found under AF_INET, as the kernel hashes it.
std::optional<uint64_t> client_cookie(const sockaddr_storage& peer, const sockaddr_storage& here) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return std::nullopt;
  struct {
    nlmsghdr h;
    inet_diag_req_v2 r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.r.sdiag_family = static_cast<uint8_t>(peer.ss_family);
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = ~0u;
  // The client socket: its local end is our peer, its remote end is us.
  if (peer.ss_family == AF_INET6) {
    const auto* p = reinterpret_cast<const sockaddr_in6*>(&peer);
    const auto* h = reinterpret_cast<const sockaddr_in6*>(&here);
    req.r.id.idiag_sport = p->sin6_port;
    req.r.id.idiag_dport = h->sin6_port;
    std::memcpy(req.r.id.idiag_src, &p->sin6_addr, 16);
    std::memcpy(req.r.id.idiag_dst, &h->sin6_addr, 16);
  } else {
    const auto* p = reinterpret_cast<const sockaddr_in*>(&peer);
    const auto* h = reinterpret_cast<const sockaddr_in*>(&here);
    req.r.id.idiag_sport = p->sin_port;
    req.r.id.idiag_dport = h->sin_port;
    req.r.id.idiag_src[0] = p->sin_addr.s_addr;
    req.r.id.idiag_dst[0] = h->sin_addr.s_addr;
  }
  req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (::send(nl.get(), &req, sizeof req, 0) != static_cast<ssize_t>(sizeof req)) return std::nullopt;
  alignas(nlmsghdr) uint8_t buf[1024];
  timeval tv{1, 0};
  ::setsockopt(nl.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(inet_diag_msg))) || !NLMSG_OK(h, static_cast<unsigned>(n)) ||
      h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
    return std::nullopt;
  auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
  return static_cast<uint64_t>(m->id.idiag_cookie[0]) | static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32;
}

// The kernel's route type for `addr` (16 bytes, IPv4 as ::ffff:a.b.c.d): RTN_UNICAST for
// an address elsewhere, RTN_LOCAL for one of this host's (any interface's, or an AnyIP
// `local` route), RTN_BROADCAST/MULTICAST/...; -1 when the lookup fails. One RTM_GETROUTE.
int route_type(const std::array<uint8_t, 16>& addr, bool v4) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!nl) return -1;
  struct {
    nlmsghdr h;
    rtmsg r;
    uint8_t attr[RTA_SPACE(16)];
  } req{};
  size_t alen = v4 ? 4 : 16;
  req.h.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(rtmsg)) + RTA_SPACE(alen));
  req.h.nlmsg_type = RTM_GETROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.r.rtm_family = v4 ? AF_INET : AF_INET6;
  req.r.rtm_dst_len = static_cast<unsigned char>(alen * 8);
  auto* rta = reinterpret_cast<rtattr*>(req.attr);
  rta->rta_type = RTA_DST;
  rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(alen));
  std::memcpy(RTA_DATA(rta), v4 ? addr.data() + 12 : addr.data(), alen);
  if (::send(nl.get(), &req, req.h.nlmsg_len, 0) < 0) return -1;
  timeval tv{1, 0};
  ::setsockopt(nl.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  alignas(nlmsghdr) uint8_t buf[4096];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(rtmsg))) || !NLMSG_OK(h, static_cast<unsigned>(n)) ||
      h->nlmsg_type != RTM_NEWROUTE)
    return -1;
  return static_cast<rtmsg*>(NLMSG_DATA(h))->rtm_type;
}

// Closed with a reset: the client sees the connection refused mid-way, not a clean end
// it could take for the server's answer.
void reset_close(UniqueFd& fd) {
  linger l{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd.reset();
}

bool is_v4_mapped(const uint8_t* a) {
  return std::all_of(a, a + 10, [](uint8_t b) { return b == 0; }) && a[10] == 0xff && a[11] == 0xff;
}

bool port_allowed(const DomainRule& r, uint16_t port) {
  if (r.proto == NetProto::udp) return false;
  if (r.ports.empty()) return true;
  return std::any_of(r.ports.begin(), r.ports.end(),
                     [&](const auto& pr) { return port >= pr.first && port <= pr.second; });
}

struct Upstream {
  sockaddr_storage sa{};
  socklen_t len = 0;
  std::string text;
};

Result<Upstream> parse_upstream(const std::string& ip) {
  Upstream u;
  u.text = ip;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&u.sa);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&u.sa);
  if (inet_pton(AF_INET, ip.c_str(), &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(53);
    u.len = sizeof *s4;
  } else if (inet_pton(AF_INET6, ip.c_str(), &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(53);
    u.len = sizeof *s6;
  } else {
    return error(fmt::format("dns resolver '{}' is not an IP address", escape_text(ip)));
  }
  return u;
}

}  // namespace

struct DnsGuard::Impl {
  DnsGuardOptions o;
  std::vector<Upstream> upstreams;
  UniqueFd udp4, tcp4, udp6, tcp6;
  uint16_t port = 0, port6 = 0;
  // The name check (name_check.h): its listeners, and one thread per connection it
  // holds (each waits on its client and its server), joined when done or at stop.
  // Bounded: a sandbox cannot make the daemon start threads without end.
  UniqueFd name4, name6;
  uint16_t name_port = 0, name_port6 = 0;
  std::atomic<uint64_t> names_refused{0}, names_spliced{0};
  struct Conn {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Conn> conns;  // the guard's thread only
  // Each connection holds 6 descriptors and a thread: bounded per sandbox, and over all
  // sandboxes of the process, so one cannot exhaust agentcaged's descriptors for the rest.
  static constexpr size_t kMaxConns = 128;
  static inline std::atomic<size_t> all_conns{0};
  static constexpr size_t kMaxAllConns = 1024;
  UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> queries{0}, refused{0}, forwarded{0};
  struct Learned {
    uint64_t expires_ns = 0;
    std::vector<ac_net_port_range> ranges;
  };
  std::map<std::array<uint8_t, 16>, Learned> learned;
  std::shared_ptr<DnsNames> names = std::make_shared<DnsNames>();
  uint64_t last_sweep_ns = 0;

  Status bind_all() {
    for (int attempt = 0; attempt < 16; ++attempt) {
      udp4.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      tcp4.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (!udp4 || !tcp4) return sys_error("socket(dns guard)");
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::bind(udp4.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return sys_error("bind(127.0.0.1, udp)");
      socklen_t l = sizeof a;
      ::getsockname(udp4.get(), reinterpret_cast<sockaddr*>(&a), &l);
      port = ntohs(a.sin_port);
      int one = 1;
      ::setsockopt(tcp4.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(tcp4.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(tcp4.get(), 64) != 0) {
        if (errno == EADDRINUSE) continue;  // another socket has this TCP port: pick again
        return sys_error(fmt::format("bind(127.0.0.1:{}, tcp)", port));
      }
      // ::1 on the same port where the host has IPv6 loopback; else IPv6 queries are refused.
      udp6.reset(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      tcp6.reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      sockaddr_in6 a6{};
      a6.sin6_family = AF_INET6;
      a6.sin6_addr = in6addr_loopback;
      a6.sin6_port = htons(port);
      if (udp6 && tcp6) {
        ::setsockopt(udp6.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ::setsockopt(tcp6.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ::setsockopt(tcp6.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        bool ok = ::bind(udp6.get(), reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0 &&
                  ::bind(tcp6.get(), reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0 && ::listen(tcp6.get(), 64) == 0;
        if (!ok && errno == EADDRINUSE) continue;
        if (ok) port6 = port;
      }
      if (!port6) {
        udp6.reset();
        tcp6.reset();
      }
      return {};
    }
    return error("no free loopback port for the sandbox's DNS resolver after 16 tries");
  }

  void run() {
    std::vector<pollfd> fds;
    while (!stopping.load(std::memory_order_acquire)) {
      fds.clear();
      fds.push_back({wake.get(), POLLIN, 0});
      for (int fd : {udp4.get(), tcp4.get(), udp6.get(), tcp6.get(), name4.get(), name6.get()})
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) {
        spdlog::warn("sandbox {}: dns guard: poll: {}", o.sandbox_id, std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      sweep();
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        int fd = fds[i].fd;
        bool v6 = fd == udp6.get() || fd == tcp6.get() || fd == name6.get();
        if (fd == name4.get() || fd == name6.get()) accept_named(fd, v6);
        else if (fd == udp4.get() || fd == udp6.get()) serve_udp(fd, v6);
        else serve_tcp(fd, v6);
      }
      reap(false);
    }
    reap(true);  // each sees `stopping` within 200 ms
  }

  void reap(bool all) {
    std::erase_if(conns, [&](Conn& c) {
      if (!all && !c.done->load(std::memory_order_acquire)) return false;
      c.thread.join();
      return true;
    });
  }

  Status bind_names() {
    if (!o.origin) return {};
    auto listen_on = [](int family, UniqueFd& fd, uint16_t& p) {
      fd.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      if (!fd) return false;
      sockaddr_storage ss{};
      socklen_t len = 0;
      if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
      } else {
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
      }
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd.get(), 256) != 0) {
        fd.reset();
        return false;
      }
      socklen_t l = sizeof ss;
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &l);
      p = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                  : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
      return true;
    };
    if (!listen_on(AF_INET, name4, name_port)) return sys_error("bind(127.0.0.1, tcp) for the name check");
    (void)listen_on(AF_INET6, name6, name_port6);  // no ::1: the kernel refuses IPv6 destinations
    return {};
  }

  // Connections the kernel sent to the name check. Only those it redirected for this
  // sandbox have an origin: another local process that found the port gets a reset.
  void accept_named(int lfd, bool v6) {
    for (int n = 0; n < 64 && !stopping.load(std::memory_order_acquire); ++n) {
      sockaddr_storage from{};
      socklen_t fl = sizeof from;
      UniqueFd c(::accept4(lfd, reinterpret_cast<sockaddr*>(&from), &fl, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!c) {
        // Out of descriptors: the listener stays readable, so waiting is all that helps
        // (the client waits in the backlog or times out), not spinning on poll.
        if (errno == EMFILE || errno == ENFILE) {
          spdlog::warn("sandbox {}: name check: accept: {}", o.sandbox_id, std::strerror(errno));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return;
      }
      sockaddr_storage here{};
      socklen_t hl = sizeof here;
      ::getsockname(c.get(), reinterpret_cast<sockaddr*>(&here), &hl);
      uint16_t cport = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&from)->sin6_port
                                : reinterpret_cast<sockaddr_in*>(&from)->sin_port);
      auto cookie = client_cookie(from, here);
      auto orig = cookie ? o.origin(*cookie) : std::nullopt;
      if (!orig || orig->sandbox != o.sandbox_key) {
        spdlog::debug("sandbox {}: name check: a connection from port {} the kernel did not send here", o.sandbox_id,
                      cport);
        reset_close(c);
        continue;
      }
      reap(false);
      if (conns.size() >= kMaxConns || all_conns.load() >= kMaxAllConns) {
        report_named(*orig, 0, "", "", nullptr,
                     fmt::format("refused: {} connections are in the name check already",
                                 conns.size() >= kMaxConns ? conns.size() : all_conns.load()),
                     "deny");
        names_refused.fetch_add(1, std::memory_order_relaxed);
        reset_close(c);
        continue;
      }
      auto done = std::make_shared<std::atomic<bool>>(false);
      int fd = c.release();
      all_conns.fetch_add(1);
      try {
        conns.push_back(Conn{std::thread([this, fd, v6, cport, o2 = *orig, done] {
                               check_named(UniqueFd(fd), v6, cport, o2);
                               all_conns.fetch_sub(1);
                               done->store(true, std::memory_order_release);
                             }),
                             done});
      } catch (const std::system_error& e) {
        // No thread to be had (a tasks limit): this connection is refused, the daemon goes on.
        all_conns.fetch_sub(1);
        UniqueFd lost(fd);
        spdlog::warn("sandbox {}: name check: no thread for a connection: {}", o.sandbox_id, e.what());
        report_named(*orig, 0, "", "", nullptr, "refused: no thread to check it on", "deny");
        reset_close(lost);
      }
    }
  }

  // One connection: read until its first bytes name a host (or cannot), decide by the
  // domain rules for that name and the original port, then splice it to where it was
  // going with the bytes already read, or reset it. Every refusal is a violation.
  void check_named(UniqueFd c, bool v6, uint16_t cport, ac_name_orig orig) {
    // Which process: only for a refusal (its violation names it; a kill needs it). An
    // allowed connect is attributed by the kernel's own record, and the /proc scan would
    // cost every connection most of its set-up time.
    auto who = [&] { return asking_pid(o.cgroup_path, true, v6, cport, v6 ? name_port6 : name_port); };
    std::vector<uint8_t> head;
    WireName wn;
    uint64_t deadline = mono_ms() + static_cast<uint64_t>(o.name_timeout_ms);
    bool timed_out = false;
    while (!stopping.load(std::memory_order_acquire)) {
      uint64_t now = mono_ms();
      if (now >= deadline) {
        timed_out = true;
        break;
      }
      if (!wait_fd(c.get(), POLLIN, std::min(deadline, now + 200))) continue;
      uint8_t buf[4096];
      ssize_t r = ::recv(c.get(), buf, std::min(sizeof buf, kWireHeadMax - head.size()), MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) return;  // gone before naming anything: nothing went anywhere
      head.insert(head.end(), buf, buf + r);
      wn = wire_name(head);
      if (wn.kind != WireName::Kind::incomplete) break;
      if (head.size() >= kWireHeadMax) {
        wn.error = "no complete ClientHello or request headers in the first 16 KiB";
        break;
      }
    }
    if (stopping.load(std::memory_order_acquire)) return;
    const std::string mech = wn.kind == WireName::Kind::http  ? "http-host"
                             : wn.kind == WireName::Kind::tls ? "tls-sni"
                             : orig.port == 80                ? "http-host"
                                                              : "tls-sni";
    std::string why;
    const DomainRule* rule = nullptr;
    if (timed_out) why = fmt::format("named no host within {} ms", o.name_timeout_ms);
    else if (!wn.error.empty()) why = wn.error;
    else if (wn.ech && !o.allow_unnamed) why = "an encrypted ClientHello (ECH): its SNI is only the outer name";
    else if (wn.name.empty() && !o.allow_unnamed) why = wn.kind == WireName::Kind::tls ? "no SNI" : "no Host header";
    if (why.empty() && !wn.name.empty()) {
      rule = match_domain(o.domains, wn.name);
      if (!rule) why = "no entry for " + wn.name;
      else if (rule->action == DomainAction::deny || rule->action == DomainAction::kill)
        why = fmt::format("{} is a {} entry", rule->pattern, to_string(rule->action));
      else if (!port_allowed(*rule, orig.port))
        why = fmt::format("{} does not allow TCP port {}", rule->pattern, orig.port);
    }
    bool audited = !why.empty() && (o.audit_mode || (!rule && o.default_action == NetAction::audit));
    bool kill = !why.empty() && !audited &&
                ((rule && rule->action == DomainAction::kill) || (!rule && !wn.name.empty() &&
                                                                  o.default_action == NetAction::kill));
    uint32_t pid = why.empty() ? 0 : who();
    bool killed = kill && pid && kill_in_sandbox(pid);
    if (why.empty()) {
      report_named(orig, 0, wn.name, mech, rule, "", rule && rule->action == DomainAction::audit ? "audit" : "");
    } else {
      report_named(orig, pid, wn.name, mech, rule, "refused: " + why,
                   audited ? "audit" : killed ? "kill" : "deny");
      if (!audited) {
        names_refused.fetch_add(1, std::memory_order_relaxed);
        reset_close(c);
        return;
      }
    }
    // Plain HTTP: one request per connection, so each request's Host is read.
    if (wn.kind == WireName::Kind::http) head = one_request_only(head, wn);
    // On to where it was going: the daemon's own connection (outside the sandbox's cgroup).
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (is_v4_mapped(orig.addr)) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      std::memcpy(&a->sin_addr, orig.addr + 12, 4);
      a->sin_port = htons(orig.port);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      std::memcpy(&a->sin6_addr, orig.addr, 16);
      a->sin6_port = htons(orig.port);
      len = sizeof *a;
    }
    UniqueFd up(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!up) return reset_close(c);
    int err = 0;
    socklen_t el = sizeof err;
    uint64_t cdl = mono_ms() + static_cast<uint64_t>(o.name_timeout_ms);
    // In slices: stop() must not wait out a server that does not answer.
    auto writable = [&] {
      while (!stopping.load(std::memory_order_acquire) && mono_ms() < cdl)
        if (wait_fd(up.get(), POLLOUT, std::min(cdl, mono_ms() + 200))) return true;
      return false;
    };
    if ((::connect(up.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) || !writable() ||
        ::getsockopt(up.get(), SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0 ||
        !write_full(up.get(), head.data(), head.size(), std::min(cdl, mono_ms() + 2000))) {
      spdlog::debug("sandbox {}: name check: {} port {}: the server did not take the connection", o.sandbox_id,
                    record_text(std::to_array(orig.addr)), orig.port);
      return reset_close(c);  // as the server's own refusal would look
    }
    names_spliced.fetch_add(1, std::memory_order_relaxed);
    (void)splice_both_ways(c.get(), up.get(), stopping, o.idle_timeout_ms);
  }

  // A record of the name check: an allowed connection (action empty) is a net event, the
  // rest violations; both name what the connection asked for and where it was going.
  void report_named(const ac_name_orig& orig, uint32_t pid, const std::string& name, const std::string& mech,
                    const DomainRule* rule, const std::string& outcome, const std::string& action) {
    v1::Event ev;
    ev.set_node(o.node);
    ev.set_time_ns(wall_ns());
    ev.set_ktime_ns(boot_ns());
    ev.set_sandbox_id(o.sandbox_id);
    if (pid) {
      ev.mutable_process()->set_pid(pid);
      std::string comm;
      std::getline(std::ifstream(fmt::format("/proc/{}/comm", pid)), comm);
      ev.mutable_process()->set_comm(comm);
    }
    v1::NetOp n;
    n.set_op("connect");
    n.set_protocol("tcp");
    bool mapped = is_v4_mapped(orig.addr);
    auto* r = n.mutable_remote();
    r->set_family(orig.family == AF_INET6 ? "inet6" : "inet");
    r->set_address(record_text(std::to_array(orig.addr)));
    r->set_port(orig.port);
    r->set_v4_mapped(orig.family == AF_INET6 && mapped);
    n.set_name(name);
    n.set_wire(mech);
    n.set_name_checked(true);
    std::string where = fmt::format("{}{}:{}", r->v4_mapped() ? "::ffff:" : "", r->address(), r->port());
    if (r->family() == "inet6" && !r->v4_mapped()) where = fmt::format("[{}]:{}", r->address(), r->port());
    if (action.empty()) {
      *ev.mutable_net() = std::move(n);
    } else {
      auto* v = ev.mutable_violation();
      v->set_mechanism(mech.empty() ? "agentcaged" : mech);
      v->set_rule(mech.empty() ? fmt::format("name check: at most {} connections at once per sandbox, {} in all",
                                             kMaxConns, kMaxAllConns)
                  : rule         ? fmt::format("network.domains: {} {}", rule->pattern, to_string(rule->action))
                  : name.empty() ? std::string("network.domains: a name is required (network.allow_unnamed: false)")
                                      : fmt::format("network.domains: no entry for {} (network.default: {})", name,
                                                    to_string(o.default_action)));
      v->set_action(action);
      v->set_what(fmt::format("connect {} ({})/tcp{}{}", name.empty() ? "(no name)" : name, where,
                              mech == "tls-sni" ? ", by TLS SNI" : mech == "http-host" ? ", by HTTP Host" : "",
                              outcome.empty() ? std::string(": carried on (audit)") : ": " + outcome));
      *v->mutable_net() = std::move(n);
    }
    if (o.emit) o.emit(std::move(ev));
  }

  void serve_udp(int fd, bool v6) {
    // Drains what is queued: several queries (A and AAAA) usually arrive together.
    for (int n = 0; n < 64 && !stopping.load(std::memory_order_acquire); ++n) {
      std::vector<uint8_t> buf(kMaxMessage);
      sockaddr_storage from{};
      socklen_t fl = sizeof from;
      ssize_t r = ::recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
      if (r < 0) return;
      buf.resize(static_cast<size_t>(r));
      uint16_t cport = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&from)->sin6_port
                                : reinterpret_cast<sockaddr_in*>(&from)->sin_port);
      auto reply = answer(buf, false, v6, cport);
      if (!reply.empty())
        (void)::sendto(fd, reply.data(), reply.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fl);
    }
  }

  void serve_tcp(int lfd, bool v6) {
    sockaddr_storage from{};
    socklen_t fl = sizeof from;
    UniqueFd c(::accept4(lfd, reinterpret_cast<sockaddr*>(&from), &fl, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c) return;
    uint16_t cport = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&from)->sin6_port
                              : reinterpret_cast<sockaddr_in*>(&from)->sin_port);
    // A few queries per connection, each read and each answer written within one
    // deadline: a client that stalls or never reads holds the guard no longer than that
    // (any local process can connect to this port, not only the sandbox).
    for (int n = 0; n < 8 && !stopping.load(std::memory_order_acquire); ++n) {
      uint8_t len[2];
      uint64_t deadline = mono_ms() + static_cast<uint64_t>(o.upstream_timeout_ms);
      if (!read_full(c.get(), len, 2, deadline)) return;
      std::vector<uint8_t> msg(static_cast<size_t>(len[0] << 8 | len[1]));
      if (msg.empty() || !read_full(c.get(), msg.data(), msg.size(), deadline)) return;
      auto reply = answer(msg, true, v6, cport);
      if (reply.empty()) return;
      uint8_t rl[2] = {static_cast<uint8_t>(reply.size() >> 8), static_cast<uint8_t>(reply.size())};
      deadline = mono_ms() + static_cast<uint64_t>(o.upstream_timeout_ms);
      if (!write_full(c.get(), rl, 2, deadline) || !write_full(c.get(), reply.data(), reply.size(), deadline)) return;
    }
  }

  // The reply for one query (empty: none, the query was not one).
  std::vector<uint8_t> answer(const std::vector<uint8_t>& msg, bool tcp, bool v6, uint16_t cport) {
    queries.fetch_add(1, std::memory_order_relaxed);
    auto q = parse_dns_query(msg);
    if (!q) {
      spdlog::debug("sandbox {}: dns guard: dropped a malformed query: {}", o.sandbox_id, q.error().message());
      return {};
    }
    std::string name = normalize_dns_name(q->name);
    // A label holding a dot or a byte no host name has arrives escaped ("evil\\.npmjs.org"):
    // no entry matches it, whatever its suffix looks like.
    const DomainRule* rule = name.find('\\') == std::string::npos ? match_domain(o.domains, name) : nullptr;
    bool allowed = rule && rule->action == DomainAction::allow;
    bool audited = (rule && rule->action == DomainAction::audit) ||
                   (!rule && o.default_action == NetAction::audit) || (!allowed && o.audit_mode);
    bool forward = allowed || audited;
    std::string rule_text;
    if (rule) rule_text = fmt::format("network.domains: {} {}", rule->pattern, to_string(rule->action));
    else rule_text = fmt::format("network.domains: no entry for {} (network.default: {})", printable_text(name),
                                 to_string(o.default_action));

    v1::Event ev;
    ev.set_node(o.node);
    ev.set_time_ns(wall_ns());
    ev.set_ktime_ns(boot_ns());
    ev.set_sandbox_id(o.sandbox_id);
    uint32_t asker = asking_pid(o.cgroup_path, tcp, v6, cport, tcp ? (v6 ? port6 : port) : 0);
    // Only a process of the sandbox is served: the port is on the host's loopback, where
    // any local process could otherwise plant answers into this sandbox's learned map. A
    // sender that is gone already (or never was the sandbox's) gets REFUSED, reported.
    bool unknown = asker == 0 && !o.cgroup_path.empty();
    if (unknown) {
      allowed = false;
      audited = false;
      forward = false;
    }
    if (uint32_t pid = asker) {
      ev.mutable_process()->set_pid(pid);
      std::string comm;
      std::getline(std::ifstream(fmt::format("/proc/{}/comm", pid)), comm);
      ev.mutable_process()->set_comm(comm);
    }
    v1::DnsQuery dq;
    dq.set_name(q->name);
    dq.set_type(dns_type_name(q->type));
    dq.set_transport(tcp ? "tcp" : "udp");
    if (rule) dq.set_rule(rule->pattern);

    // kill: the process that asked dies before it has an answer (as a kill rule for an
    // address kills the connecting process); without one found, the name is refused.
    bool kill = !forward && !o.audit_mode &&
                ((rule && rule->action == DomainAction::kill) || (!rule && o.default_action == NetAction::kill));
    bool killed = kill && ev.process().pid() && kill_in_sandbox(ev.process().pid());
    std::vector<uint8_t> reply;
    if (!forward) {
      refused.fetch_add(1, std::memory_order_relaxed);
      reply = dns_reply_without_records(msg, *q, kDnsRefused);
      dq.set_rcode(dns_rcode_name(kDnsRefused));
    } else {
      forwarded.fetch_add(1, std::memory_order_relaxed);
      // An audited name is resolved and connectable (audit denies nothing), and reported.
      reply = ask_upstream(msg, *q, tcp,
                           rule && (rule->action == DomainAction::allow || rule->action == DomainAction::audit), rule,
                           dq);
    }
    if (!allowed) {
      auto* v = ev.mutable_violation();
      v->set_mechanism("dns");
      v->set_rule(rule_text);
      v->set_action(audited ? "audit" : killed ? "kill" : "deny");
      v->set_what(fmt::format("dns {} {} ({}){}", dns_type_name(q->type), printable_text(name), tcp ? "tcp" : "udp",
                              audited  ? ": resolved (audit)"
                              : killed ? ": not sent upstream, the asking process killed"
                              : unknown ? ": refused, not sent upstream (the asking socket is in no sandbox process)"
                              : kill   ? ": refused, not sent upstream (the asking process was not found to kill)"
                                       : ": refused, not sent upstream"));
      *v->mutable_dns() = std::move(dq);
    } else {
      *ev.mutable_dns() = std::move(dq);
    }
    if (o.emit) o.emit(std::move(ev));
    return reply;
  }

  // SIGKILL through a pidfd, once the pid is seen to be still in this sandbox's cgroup:
  // the pid came from the cgroup a moment ago, the pidfd pins it against reuse.
  bool kill_in_sandbox(uint32_t pid) {
    UniqueFd pfd(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
    if (!pfd) return false;
    std::ifstream in(fmt::format("/proc/{}/cgroup", pid));
    std::string line, cg;
    while (std::getline(in, line))
      if (line.rfind("0::", 0) == 0) cg = line.substr(3);
    // /proc/PID/cgroup is relative to the cgroup2 mount; the sandbox's path is absolute.
    auto mnt = cgroup2_mount();
    if (cg.empty() || !mnt) return false;
    std::string abs = *mnt + cg;
    bool inside = abs == o.cgroup_path || abs.starts_with(o.cgroup_path + "/");
    if (!inside) return false;
    return ::syscall(SYS_pidfd_send_signal, pfd.get(), SIGKILL, nullptr, 0) == 0;
  }

  std::vector<uint8_t> ask_upstream(const std::vector<uint8_t>& msg, const DnsQuestion& q, bool tcp, bool learn_it,
                                    const DomainRule* rule, v1::DnsQuery& dq) {
    uint16_t id = 0;
    for (const auto& u : upstreams) {
      if (stopping.load(std::memory_order_acquire)) break;
      (void)getrandom(&id, sizeof id, 0);
      std::vector<uint8_t> out(msg);
      out[0] = static_cast<uint8_t>(id >> 8);
      out[1] = static_cast<uint8_t>(id);
      std::vector<uint8_t> resp;
      if (!exchange(u, out, tcp, resp)) continue;
      auto a = parse_dns_answer(resp, q);
      if (!a || a->id != id) {
        spdlog::debug("sandbox {}: dns guard: bad answer from {}: {}", o.sandbox_id, u.text,
                      a ? "wrong id" : a.error().message());
        continue;
      }
      resp[0] = static_cast<uint8_t>(q.id >> 8);
      resp[1] = static_cast<uint8_t>(q.id);
      dq.set_rcode(dns_rcode_name(a->rcode));
      for (const auto& addr : a->addresses) {
        dq.add_answers(fmt::format("{} ttl={}", address_text(addr), addr.ttl));
        if (learn_it && rule && learn(addr, *rule)) names->add(record_text(addr.addr), normalize_dns_name(q.name), boot_ns());
      }
      return resp;
    }
    dq.set_rcode(dns_rcode_name(kDnsServFail));
    return dns_reply_without_records(msg, q, kDnsServFail);
  }

  bool exchange(const Upstream& u, const std::vector<uint8_t>& out, bool tcp, std::vector<uint8_t>& resp) {
    UniqueFd s(::socket(u.sa.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s) return false;
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&u.sa), u.len) != 0 && errno != EINPROGRESS) return false;
    if (tcp) {
      pollfd pf{s.get(), POLLOUT, 0};
      int err = 0;
      socklen_t el = sizeof err;
      if (::poll(&pf, 1, o.upstream_timeout_ms) <= 0 || ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
          err != 0)
        return false;
      uint8_t l[2] = {static_cast<uint8_t>(out.size() >> 8), static_cast<uint8_t>(out.size())};
      uint64_t deadline = mono_ms() + static_cast<uint64_t>(o.upstream_timeout_ms);
      if (!write_full(s.get(), l, 2, deadline) || !write_full(s.get(), out.data(), out.size(), deadline)) return false;
      if (!read_full(s.get(), l, 2, deadline)) return false;
      resp.resize(static_cast<size_t>(l[0] << 8 | l[1]));
      return !resp.empty() && read_full(s.get(), resp.data(), resp.size(), deadline);
    }
    if (::send(s.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) return false;
    pollfd pf{s.get(), POLLIN, 0};
    if (::poll(&pf, 1, o.upstream_timeout_ms) <= 0) return false;
    resp.resize(kMaxMessage);
    ssize_t r = ::recv(s.get(), resp.data(), resp.size(), 0);
    if (r <= 0) return false;
    resp.resize(static_cast<size_t>(r));
    return true;
  }

  bool learn(const DnsAddress& a, const DomainRule& rule) {
    // 0.0.0.0, :: and IPv4-compatible ::a.b.c.d reach this host by another spelling; a
    // name answered with them is not given the local host (the kernel does not check a
    // learned address for local aliases).
    bool unspecified = std::all_of(a.addr.begin() + 12, a.addr.end(), [](uint8_t b) { return b == 0; }) &&
                       std::all_of(a.addr.begin(), a.addr.begin() + 10, [](uint8_t b) { return b == 0; });
    bool compat = !a.v4 && std::all_of(a.addr.begin(), a.addr.begin() + 12, [](uint8_t b) { return b == 0; });
    // Loopback and link-local answers are DNS rebinding: an allowed name must not open
    // the host's own services or the cloud metadata endpoint (169.254.169.254). A rule
    // naming those addresses is how a profile opens them.
    const uint8_t* v4 = a.addr.data() + 12;
    // An AAAA answer of ::ffff:a.b.c.d is the IPv4 address a.b.c.d to the kernel's map.
    bool as_v4 = a.v4 || (std::all_of(a.addr.begin(), a.addr.begin() + 10, [](uint8_t b) { return b == 0; }) &&
                          a.addr[10] == 0xff && a.addr[11] == 0xff);
    bool loopback = as_v4 ? v4[0] == 127
                         : std::all_of(a.addr.begin(), a.addr.begin() + 15, [](uint8_t b) { return b == 0; }) &&
                               a.addr[15] == 1;
    bool link_local = as_v4 ? (v4[0] == 169 && v4[1] == 254) : (a.addr[0] == 0xfe && (a.addr[1] & 0xc0) == 0x80);
    // And any other address of this host (its interfaces' own, AnyIP ranges): the
    // kernel's local-alias check does not apply to learned addresses, so a name answered
    // with 192.0.2.2 would otherwise open the services listening on every interface.
    // Asked of the routing table, not a list of interface addresses, so it cannot go stale.
    int rt = unspecified || compat || loopback || link_local ? RTN_UNICAST : route_type(a.addr, as_v4);
    bool local = rt == RTN_LOCAL, not_unicast = rt != RTN_UNICAST && !local;
    if (unspecified || compat || loopback || link_local || local || not_unicast) {
      spdlog::info("sandbox {}: dns guard: {} answered with {}: not learned ({})", o.sandbox_id, rule.pattern,
                   address_text(a),
                   loopback     ? "loopback"
                   : link_local ? "link-local"
                   : local      ? "an address of this host"
                   : not_unicast ? (rt < 0 ? "no route to it" : "not a unicast address")
                                : "this host");
      return false;
    }
    uint64_t now = boot_ns();
    auto it = learned.find(a.addr);
    if (it == learned.end()) {
      if (learned.size() >= kMaxLearned) {
        spdlog::warn("sandbox {}: dns guard: {} addresses learned already; {} not learned", o.sandbox_id, kMaxLearned,
                     address_text(a));
        return false;
      }
      it = learned.emplace(a.addr, Learned{}).first;
    }
    Learned& l = it->second;
    // Capped at a day: an upstream's huge TTL must not make an address connectable for good.
    uint64_t until = now + (std::min<uint64_t>(a.ttl, 86400) + o.grace_s) * 1'000'000'000ull;
    l.expires_ns = std::max<uint64_t>(l.expires_ns, until);
    uint8_t bits = proto_bits(rule.proto);
    auto add = [&](uint16_t lo, uint16_t hi) {
      for (const auto& r : l.ranges)
        if (r.lo == lo && r.hi == hi && (r.proto & bits) == bits) return;
      ac_net_port_range r{};
      r.lo = lo;
      r.hi = hi;
      r.proto = bits;
      l.ranges.push_back(r);
    };
    if (rule.ports.empty()) add(0, 65535);
    for (const auto& [lo, hi] : rule.ports) add(lo, hi);
    if (l.ranges.size() > AC_NET_LEARNED_RANGES) {
      // Fails closed: the ports of the names learned last are the ones kept.
      spdlog::warn("sandbox {}: dns guard: {} has more than {} port ranges from its names; the oldest are dropped",
                   o.sandbox_id, address_text(a), AC_NET_LEARNED_RANGES);
      l.ranges.erase(l.ranges.begin(), l.ranges.end() - AC_NET_LEARNED_RANGES);
    }
    ac_net_learned_key k{};
    k.sandbox = o.sandbox_key;
    std::copy(a.addr.begin(), a.addr.end(), k.addr);
    ac_net_learned_value v{};
    v.expires_ns = l.expires_ns;
    v.count = static_cast<uint32_t>(l.ranges.size());
    std::copy(l.ranges.begin(), l.ranges.end(), v.ranges);
    if (o.learn)
      if (auto st = o.learn(k, v); !st) {
        spdlog::warn("sandbox {}: dns guard: {}: {}", o.sandbox_id, address_text(a), st.error().message());
        return false;
      }
    return true;
  }

  // Expired entries leave our table (the kernel ignores them already; they are deleted
  // there when the sandbox's policy is removed, or overwritten when learned again).
  void sweep() {
    uint64_t now = boot_ns();
    if (now - last_sweep_ns < 10'000'000'000ull) return;
    last_sweep_ns = now;
    std::erase_if(learned, [&](const auto& kv) {
      if (kv.second.expires_ns > now) return false;
      // From the kernel too: the map is shared by every sandbox (65536 entries), and a
      // wildcard with short TTLs would otherwise fill it for all of them.
      ac_net_learned_key k{};
      k.sandbox = o.sandbox_key;
      std::copy(kv.first.begin(), kv.first.end(), k.addr);
      if (o.unlearn) (void)o.unlearn(k);
      names->forget(record_text(kv.first));
      return true;
    });
  }
};

Result<std::unique_ptr<DnsGuard>> DnsGuard::create(DnsGuardOptions opts) {
  auto impl = std::make_unique<Impl>();
  if (!impl->wake) return sys_error("eventfd(dns guard)");
  if (opts.upstreams.empty())
    return error("network.domains needs a resolver to forward allowed names to: network.dns is empty",
                 "add `dns: [system]` (the nameservers of /etc/resolv.conf) or a resolver's address");
  for (const auto& u : opts.upstreams) {
    auto p = parse_upstream(u);
    if (!p) return std::unexpected(p.error());
    impl->upstreams.push_back(*p);
  }
  impl->o = std::move(opts);
  if (auto st = impl->bind_all(); !st) return std::unexpected(st.error());
  if (auto st = impl->bind_names(); !st) return std::unexpected(st.error());
  return std::unique_ptr<DnsGuard>(new DnsGuard(std::move(impl)));
}

DnsGuard::DnsGuard(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DnsGuard::~DnsGuard() { stop(); }
uint16_t DnsGuard::port() const { return impl_->port; }
uint16_t DnsGuard::port6() const { return impl_->port6; }
uint64_t DnsGuard::queries() const { return impl_->queries.load(); }
uint64_t DnsGuard::refused() const { return impl_->refused.load(); }
std::shared_ptr<const DnsNames> DnsGuard::names() const { return impl_->names; }

void DnsNames::add(const std::string& address, const std::string& name, uint64_t at_ns) {
  std::lock_guard lk(mu_);
  auto& h = names_[address];
  h.push_back(Named{name, at_ns});
  if (h.size() > kPerAddress) h.erase(h.begin());
}

void DnsNames::forget(const std::string& address) {
  std::lock_guard lk(mu_);
  names_.erase(address);
}

std::string DnsNames::name_of(const std::string& address, uint64_t ktime_ns) const {
  std::lock_guard lk(mu_);
  auto it = names_.find(address);
  if (it == names_.end()) return {};
  for (auto n = it->second.rbegin(); n != it->second.rend(); ++n)
    if (n->at_ns <= ktime_ns) return n->name;
  return {};
}

uint64_t DnsGuard::forwarded() const { return impl_->forwarded.load(); }
uint64_t DnsGuard::names_refused() const { return impl_->names_refused.load(); }
uint64_t DnsGuard::names_spliced() const { return impl_->names_spliced.load(); }
uint16_t DnsGuard::name_port() const { return impl_->name_port; }
uint16_t DnsGuard::name_port6() const { return impl_->name_port6; }

void DnsGuard::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void DnsGuard::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->stopping.store(true, std::memory_order_release);
  uint64_t one = 1;
  (void)!::write(impl_->wake.get(), &one, sizeof one);
  impl_->thread.join();
}

}  // namespace agentcage::core
