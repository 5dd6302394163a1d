// SPDX-License-Identifier: Apache-2.0
// Network observation and enforcement on the real kernel: `agentcage trace`/`run` with
// net_probe (tests/support/net_probe.c) inside the sandbox. Loopback only.
//
// Every denied target has a live listener in this (untracked) test process, so without
// the cgroup programs attached the "denied" actions would succeed and the tests fail.
#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "core/events/event_json.h"
#include "support/subprocess.h"

namespace agentcage {
namespace {

using testing::run;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and creates cgroups"

const std::string kProbe = NET_PROBE_BIN;

// A socket owned by the test process, listening (TCP, unix) or bound (UDP) on loopback.
class Listener {
 public:
  static Listener tcp(int family) { return inet(family, SOCK_STREAM); }
  static Listener udp(int family) { return inet(family, SOCK_DGRAM); }
  static Listener unix_path(const std::string& path, int type = SOCK_STREAM) {
    Listener l;
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.data(), path.size());
    l.fd_ = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    EXPECT_EQ(bind(l.fd_, reinterpret_cast<sockaddr*>(&un), sizeof un), 0) << strerror(errno);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(listen(l.fd_, 16), 0);
    }
    return l;
  }
  // name without the leading '@'
  static Listener unix_abstract(const std::string& name) {
    Listener l;
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path + 1, name.data(), name.size());
    l.fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(bind(l.fd_, reinterpret_cast<sockaddr*>(&un), len), 0) << strerror(errno);
    EXPECT_EQ(listen(l.fd_, 16), 0);
    return l;
  }
  Listener(Listener&& o) noexcept : fd_(std::exchange(o.fd_, -1)), port_(o.port_) {}
  ~Listener() {
    if (fd_ >= 0) close(fd_);
  }
  std::string port() const { return std::to_string(port_); }
  uint32_t port_num() const { return port_; }

 private:
  Listener() = default;
  static Listener inet(int family, int type) {
    Listener l;
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *in;
    } else {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      len = sizeof *in6;
    }
    l.fd_ = socket(family, type | SOCK_CLOEXEC, 0);
    EXPECT_EQ(bind(l.fd_, reinterpret_cast<sockaddr*>(&ss), len), 0) << strerror(errno);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(listen(l.fd_, 64), 0);
    }
    EXPECT_EQ(getsockname(l.fd_, reinterpret_cast<sockaddr*>(&ss), &len), 0);
    l.port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                      : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return l;
  }
  int fd_ = -1;
  uint32_t port_ = 0;
};

std::vector<v1::Event> read_events(const std::string& path) {
  std::ifstream f(path);
  std::vector<v1::Event> out;
  std::string line;
  while (std::getline(f, line)) {
    v1::Event ev;
    auto st = core::message_from_json(line, &ev);  // our JSON: argv and paths are bytes, not base64
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().message()) << " not an event: " << line;
    out.push_back(ev);
  }
  return out;
}

struct Traced {
  testing::ProcResult proc;
  std::vector<v1::Event> events;
};

// agentcage trace [policy...] -- sh -c SCRIPT, events from --output.
Traced trace(const std::vector<std::string>& policy, const std::string& script) {
  auto dir = testing::temp_dir();
  std::vector<std::string> argv{AGENTCAGE_BIN, "trace", "--output", dir + "/ev.json"};
  argv.insert(argv.end(), policy.begin(), policy.end());
  argv.insert(argv.end(), {"--", "sh", "-c", script});
  Traced t;
  t.proc = run(argv);
  t.events = read_events(dir + "/ev.json");
  return t;
}

std::string probe(const std::string& args) { return kProbe + " " + args + "; "; }

// The net event (observation) whose op and remote/local port match.
std::optional<v1::NetOp> find_net(const std::vector<v1::Event>& evs, const std::string& op, const std::string& address,
                                  uint32_t port = 0) {
  for (const auto& e : evs) {
    if (!e.has_net() || e.net().op() != op) continue;
    const auto& a = e.net().has_remote() ? e.net().remote() : e.net().local();
    if (a.address() == address && (port == 0 || a.port() == port)) return e.net();
  }
  return std::nullopt;
}

std::vector<v1::Event> violations(const std::vector<v1::Event>& evs) {
  std::vector<v1::Event> out;
  for (const auto& e : evs)
    if (e.has_violation()) out.push_back(e);
  return out;
}

std::optional<v1::Event> find_violation(const std::vector<v1::Event>& evs, const std::string& what) {
  for (const auto& e : violations(evs))
    if (e.violation().what() == what) return e;
  return std::nullopt;
}

std::string dump(const Traced& t) {
  std::string s = "stdout:\n" + t.proc.out + "stderr:\n" + t.proc.err + "events:\n";
  for (const auto& e : t.events)
    if (e.has_net() || e.has_violation()) s += e.DebugString() + "\n";
  return s;
}

TEST(NetObserve, Ipv4Ipv6AndV4MappedConnects) {
  REQUIRE_ROOT();
  auto l4 = Listener::tcp(AF_INET);
  auto l6 = Listener::tcp(AF_INET6);
  auto t = trace({}, probe("connect tcp 127.0.0.1 " + l4.port()) + probe("connect tcp ::1 " + l6.port()) +
                         probe("connect tcp ::ffff:127.0.0.1 " + l4.port()));
  ASSERT_EQ(t.proc.status, 0) << dump(t);

  auto v4 = find_net(t.events, "connect", "127.0.0.1", l4.port_num());
  ASSERT_TRUE(v4) << dump(t);
  EXPECT_EQ(v4->protocol(), "tcp");
  EXPECT_EQ(v4->remote().family(), "inet");
  EXPECT_FALSE(v4->remote().v4_mapped());

  auto v6 = find_net(t.events, "connect", "::1", l6.port_num());
  ASSERT_TRUE(v6) << dump(t);
  EXPECT_EQ(v6->remote().family(), "inet6");
  EXPECT_EQ(v6->protocol(), "tcp");

  int mapped = 0;
  for (const auto& e : t.events)
    if (e.has_net() && e.net().op() == "connect" && e.net().remote().v4_mapped()) {
      ++mapped;
      EXPECT_EQ(e.net().remote().family(), "inet6");
      EXPECT_EQ(e.net().remote().address(), "127.0.0.1");
      EXPECT_EQ(e.net().remote().port(), l4.port_num());
      EXPECT_FALSE(e.sandbox_id().empty());
      EXPECT_NE(e.process().pid(), 0u);
    }
  EXPECT_EQ(mapped, 1) << dump(t);
  EXPECT_TRUE(violations(t.events).empty()) << "no policy, no violations\n" << dump(t);
}

TEST(NetObserve, UdpSendtoBindListenAccept) {
  REQUIRE_ROOT();
  auto u = Listener::udp(AF_INET);
  auto t = trace({}, probe("sendto 127.0.0.1 " + u.port() + " 5") + probe("bind udp ::1 0") +
                         probe("selfaccept 127.0.0.1"));
  ASSERT_EQ(t.proc.status, 0) << dump(t);

  auto send = find_net(t.events, "sendmsg", "127.0.0.1", u.port_num());
  ASSERT_TRUE(send) << dump(t);
  EXPECT_EQ(send->protocol(), "udp");
  // Five datagrams on one socket to one destination: reported once (ac_net_seen).
  int sends = 0;
  for (const auto& e : t.events) sends += e.has_net() && e.net().op() == "sendmsg";
  EXPECT_EQ(sends, 1) << dump(t);

  auto bind = find_net(t.events, "bind", "::1", 0);
  ASSERT_TRUE(bind) << dump(t);
  EXPECT_EQ(bind->protocol(), "udp");
  EXPECT_EQ(bind->local().family(), "inet6");

  // "listen PORT client PORT" from the probe: the kernel must report the same ports.
  unsigned lport = 0, cport = 0;
  auto pos = t.proc.out.find("listen ");
  ASSERT_NE(pos, std::string::npos) << t.proc.out;
  ASSERT_EQ(sscanf(t.proc.out.c_str() + pos, "listen %u client %u", &lport, &cport), 2);
  auto listen = find_net(t.events, "listen", "127.0.0.1", lport);
  ASSERT_TRUE(listen) << dump(t);
  EXPECT_EQ(listen->protocol(), "tcp");
  auto accept = find_net(t.events, "accept", "127.0.0.1", cport);
  ASSERT_TRUE(accept) << dump(t);
  EXPECT_EQ(accept->local().address(), "127.0.0.1");
  EXPECT_EQ(accept->local().port(), lport);
  EXPECT_EQ(accept->protocol(), "tcp");
}

TEST(NetObserve, UnixAbstractAndPathConnects) {
  REQUIRE_ROOT();
  auto dir = testing::temp_dir();
  std::string name = "agentcage-net-test-" + std::to_string(getpid());
  auto abs = Listener::unix_abstract(name);
  auto path = Listener::unix_path(dir + "/s.sock");
  auto t = trace({}, probe("unix @" + name) + probe("unix " + dir + "/s.sock"));
  ASSERT_EQ(t.proc.status, 0) << dump(t);
  auto a = find_net(t.events, "connect", "@" + name);
  ASSERT_TRUE(a) << dump(t);
  EXPECT_EQ(a->remote().family(), "unix");
  EXPECT_EQ(a->protocol(), "unix-stream");
  auto p = find_net(t.events, "connect", dir + "/s.sock");
  ASSERT_TRUE(p) << dump(t);
  EXPECT_EQ(p->remote().family(), "unix");
}

// One sandbox, one policy (127.0.0.1:ALLOWED/tcp), every escape attempted.
TEST(NetEnforce, DeniesEverythingOutsideTheAllowlist) {
  REQUIRE_ROOT();
  auto allowed = Listener::tcp(AF_INET);
  auto denied4 = Listener::tcp(AF_INET);
  auto denied6 = Listener::tcp(AF_INET6);
  auto udp = Listener::udp(AF_INET);
  auto dir = testing::temp_dir();
  auto host_sock = Listener::unix_path(dir + "/host.sock");
  auto host_dgram = Listener::unix_path(dir + "/log.sock", SOCK_DGRAM);
  std::string abs_name = "agentcage-net-deny-" + std::to_string(getpid());
  auto abs = Listener::unix_abstract(abs_name);

  std::string script = probe("connect tcp 127.0.0.1 " + allowed.port()) +           // control: allowed
                       probe("connect tcp ::ffff:127.0.0.1 " + allowed.port()) +    // v4-mapped, allowed
                       probe("connect tcp 127.0.0.1 " + denied4.port()) +           // TCP
                       probe("connect udp 127.0.0.1 " + udp.port()) +               // UDP connect
                       probe("sendto 127.0.0.1 " + udp.port()) +                    // UDP sendto
                       probe("sendto ::ffff:127.0.0.1 " + udp.port()) +             // ... from an IPv6 socket
                       probe("fastopen 127.0.0.1 " + denied4.port()) +              // TCP Fast Open
                       probe("connect tcp ::1 " + denied6.port()) +                 // IPv6
                       probe("connect tcp ::ffff:127.0.0.1 " + denied4.port()) +    // v4-mapped IPv6
                       probe("raw 127.0.0.1") +                                     // raw socket
                       probe("unix " + dir + "/host.sock") +                        // host unix socket
                       probe("unixsend " + dir + "/log.sock") +                     // unix datagram
                       probe("unix @" + abs_name);                                  // abstract unix
  auto t = trace({"--allow-net", "127.0.0.1:" + allowed.port() + "/tcp"}, script);
  ASSERT_EQ(t.proc.status, 1) << "the last probe (denied) exits with EPERM (1)\n" << dump(t);

  auto lines = testing::lines(t.proc.out);
  std::vector<std::string> want = {"connect ok",          "connect ok",          "connect error EPERM",
                                   "connect error EPERM", "sendto error EPERM",  "sendto error EPERM",
                                   "fastopen error EPERM", "connect error EPERM", "connect error EPERM",
                                   "socket error EPERM",  "connect error EPERM", "sendto error EPERM",
                                   "connect error EPERM"};
  EXPECT_EQ(lines, want) << dump(t);

  const std::string p4 = allowed.port(), d4 = denied4.port();
  for (const std::string& what : std::vector<std::string>{
           "connect 127.0.0.1:" + d4 + "/tcp", "connect 127.0.0.1:" + udp.port() + "/udp",
        "sendmsg 127.0.0.1:" + udp.port() + "/udp", "connect [::1]:" + denied6.port() + "/tcp",
        "connect ::ffff:127.0.0.1:" + d4 + "/tcp", "socket raw", "connect " + dir + "/host.sock/unix-stream",
        "connect @" + abs_name + "/unix-stream", "sendmsg " + dir + "/log.sock/unix-dgram"}) {
    auto v = find_violation(t.events, what);
    ASSERT_TRUE(v) << "no violation for " << what << "\n" << dump(t);
    EXPECT_EQ(v->violation().mechanism(), "cgroup-bpf");
    EXPECT_EQ(v->violation().action(), "deny");
    EXPECT_FALSE(v->violation().rule().empty());
    EXPECT_EQ(v->violation().net().error(), "EPERM");
    EXPECT_FALSE(v->sandbox_id().empty());
    EXPECT_NE(v->process().pid(), 0u);
    EXPECT_EQ(v->process().comm(), "net_probe");
  }
  // The v4-mapped sendto is reported as IPv4: udpv6_sendmsg hands v4-mapped destinations
  // to udp_sendmsg, whose sendmsg4 hook sees (and checks) the IPv4 address. Fast Open
  // runs the connect hook from tcp_sendmsg_fastopen.
  int v4_sends = 0, fastopen = 0;
  for (const auto& v : violations(t.events)) {
    v4_sends += v.violation().what() == "sendmsg 127.0.0.1:" + udp.port() + "/udp";
    fastopen += v.violation().what() == "connect 127.0.0.1:" + d4 + "/tcp";
  }
  EXPECT_EQ(v4_sends, 2) << dump(t);
  EXPECT_EQ(fastopen, 2) << dump(t);
  EXPECT_EQ(violations(t.events).size(), 11u) << dump(t);
  // The allowed connects are observed, not violations.
  EXPECT_TRUE(find_net(t.events, "connect", "127.0.0.1", allowed.port_num())) << dump(t);
}

TEST(NetEnforce, AllowedUnixNamesAndPortRanges) {
  REQUIRE_ROOT();
  auto a = Listener::tcp(AF_INET);
  auto b = Listener::tcp(AF_INET6);
  std::string abs_name = "agentcage-net-allow-" + std::to_string(getpid());
  auto abs = Listener::unix_abstract(abs_name);
  uint32_t lo = std::min(a.port_num(), b.port_num()), hi = std::max(a.port_num(), b.port_num());
  auto t = trace({"--allow-net", "127.0.0.0/8:" + std::to_string(lo) + "-" + std::to_string(hi) + "/tcp",
                  "--allow-net", "[::1]:" + b.port(), "--allow-unix", "@" + abs_name},
                 probe("connect tcp 127.0.0.1 " + a.port()) + probe("connect tcp ::1 " + b.port()) +
                     probe("unix @" + abs_name) + probe("connect udp ::1 " + b.port()));
  // The last one is UDP to a port allowed for any protocol on ::1: UDP connect succeeds.
  ASSERT_EQ(t.proc.status, 0) << dump(t);
  EXPECT_TRUE(violations(t.events).empty()) << dump(t);
  // Allowed, and still observed.
  EXPECT_TRUE(find_net(t.events, "connect", "127.0.0.1", a.port_num())) << dump(t);
  EXPECT_TRUE(find_net(t.events, "connect", "::1", b.port_num())) << dump(t);
  EXPECT_TRUE(find_net(t.events, "connect", "@" + abs_name)) << dump(t);
}

// bind to a port no rule allows is denied; port 0 (ephemeral) is always allowed.
TEST(NetEnforce, BindToUnlistedPortIsDenied) {
  REQUIRE_ROOT();
  auto u = Listener::udp(AF_INET6);  // reserves a port number; TCP may bind it too
  auto t = trace({"--allow-net", "127.0.0.1:1/tcp"},
                 probe("bind tcp ::1 0") + probe("bind tcp ::1 " + u.port()));
  EXPECT_EQ(t.proc.status, EPERM) << dump(t);
  EXPECT_EQ(testing::lines(t.proc.out), (std::vector<std::string>{"bind ok", "bind error EPERM"})) << dump(t);
  auto v = find_violation(t.events, "bind [::1]:" + u.port() + "/tcp");
  ASSERT_TRUE(v) << dump(t);
  EXPECT_EQ(v->violation().action(), "deny");
  EXPECT_EQ(v->violation().net().local().port(), u.port_num());
  EXPECT_EQ(violations(t.events).size(), 1u) << dump(t);
}

TEST(NetEnforce, AuditModeAllowsAndRecords) {
  REQUIRE_ROOT();
  auto l = Listener::tcp(AF_INET);
  auto t = trace({"--net-default", "audit"}, probe("connect tcp 127.0.0.1 " + l.port()));
  ASSERT_EQ(t.proc.status, 0) << dump(t);
  EXPECT_NE(t.proc.out.find("connect ok"), std::string::npos) << dump(t);
  auto v = find_violation(t.events, "connect 127.0.0.1:" + l.port() + "/tcp");
  ASSERT_TRUE(v) << dump(t);
  EXPECT_EQ(v->violation().action(), "audit");
  EXPECT_EQ(v->violation().mechanism(), "cgroup-bpf");
  EXPECT_EQ(v->violation().net().result(), 0);
}

TEST(NetEnforce, KillActionKillsTheProcess) {
  REQUIRE_ROOT();
  auto ok = Listener::tcp(AF_INET);
  auto bad = Listener::tcp(AF_INET);
  // Allowed traffic under a kill policy is untouched.
  auto r = run({AGENTCAGE_BIN, "run", "--net-default", "kill", "--allow-net", "127.0.0.1:" + ok.port(), "--", kProbe,
                "connect", "tcp", "127.0.0.1", ok.port()});
  EXPECT_EQ(r.status, 0) << r.out << r.err;

  r = run({AGENTCAGE_BIN, "run", "--net-default", "kill", "--allow-net", "127.0.0.1:" + ok.port(), "--", kProbe,
           "connect", "tcp", "127.0.0.1", bad.port()});
  EXPECT_EQ(r.status, 137) << "SIGKILL expected\n" << r.out << r.err;
  EXPECT_EQ(r.out.find("connect"), std::string::npos) << "the process ran on after the denial: " << r.out;
  EXPECT_NE(r.err.find("VIOLATION"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("net_probe kill connect 127.0.0.1:" + bad.port() + "/tcp"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cgroup-bpf"), std::string::npos) << r.err;
}

TEST(NetEnforce, RunDeniesWithEperm) {
  REQUIRE_ROOT();
  auto bad = Listener::tcp(AF_INET6);
  auto r = run({AGENTCAGE_BIN, "run", "--allow-net", "127.0.0.1:1/tcp", "--", kProbe, "connect", "tcp", "::1",
                bad.port()});
  EXPECT_EQ(r.status, EPERM) << r.out << r.err;
  EXPECT_NE(r.out.find("connect error EPERM"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("net_probe deny connect [::1]:" + bad.port() + "/tcp"), std::string::npos) << r.err;
}

// The programs sit on the cgroup2 root and follow the process, not its cgroup: a
// sandboxed process that moves itself out of the sandbox cgroup keeps its policy.
TEST(NetEnforce, LeavingTheSandboxCgroupDoesNotLeaveThePolicy) {
  REQUIRE_ROOT();
  auto bad = Listener::tcp(AF_INET);
  auto mounts = run({"sh", "-c", "awk '$9 == \"cgroup2\" {print $5; exit}' /proc/self/mountinfo"});
  auto root = testing::lines(mounts.out);
  ASSERT_FALSE(root.empty()) << "no cgroup2 mount";
  auto t = trace({"--allow-net", "127.0.0.1:1/tcp"}, "echo $$ > " + root[0] + "/cgroup.procs && cat /proc/self/cgroup; " +
                                                         probe("connect tcp 127.0.0.1 " + bad.port()));
  EXPECT_EQ(t.proc.status, EPERM) << dump(t);
  EXPECT_NE(t.proc.out.find("0::/\n"), std::string::npos) << "did not leave the cgroup\n" << dump(t);
  EXPECT_NE(t.proc.out.find("connect error EPERM"), std::string::npos) << dump(t);
  EXPECT_TRUE(find_violation(t.events, "connect 127.0.0.1:" + bad.port() + "/tcp")) << dump(t);
}

// A profile file for net_probe: base (system libraries), the probe's directory
// executable, and RULES as the network section's rule list.
std::string probe_profile(const std::string& dir, const std::string& rules) {
  std::string path = dir + "/net.yaml";
  std::string probe_dir = kProbe.substr(0, kProbe.rfind('/'));
  std::ofstream(path) << "name: net-test\ndescription: net_probe under a network policy\nextends: base\n"
                      << "filesystem:\n  exec: [" << probe_dir << "]\nnetwork:\n  rules:\n" << rules;
  return path;
}

// The VIOLATION lines `run` relayed on stderr.
std::vector<std::string> violation_lines(const std::string& err) {
  std::vector<std::string> out;
  for (const auto& l : testing::lines(err))
    if (l.find("VIOLATION") != std::string::npos) out.push_back(l);
  return out;
}

// Spellings of the local host are decided by what they reach: with ::/0 and 0.0.0.0/0
// allowed on a port and loopback denied (what coding-agent does for 443), [::], 0.0.0.0,
// ::ffff:0.0.0.0, a loopback alias and an IPv4-compatible address do not reach the
// host's listener. Natively every one of them connects (or is routed) to it.
TEST(NetEnforce, LocalHostSpellingsAreMatchedAsWhatTheyReach) {
  REQUIRE_ROOT();
  // Dual-stack wildcard listener: reachable through every local spelling, v4 and v6.
  int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  int off = 0;
  setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_any;
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << strerror(errno);
  ASSERT_EQ(listen(lfd, 64), 0);
  socklen_t sl = sizeof sa;
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &sl), 0);
  const std::string port = std::to_string(ntohs(sa.sin6_port));
  const std::vector<std::string> spellings = {"::", "0.0.0.0", "::ffff:0.0.0.0", "127.0.0.2"};
  // Control: natively each spelling reaches the listener.
  for (const auto& a : spellings) {
    auto n = run({kProbe, "connect", "tcp", a, port});
    ASSERT_EQ(n.status, 0) << a << " does not reach the local listener natively: " << n.out;
  }

  auto dir = testing::temp_dir();
  auto prof = probe_profile(dir, "    - {cidr: 0.0.0.0/0, ports: [" + port + "]}\n" +
                                     "    - {cidr: \"::/0\", ports: [" + port + "]}\n" +
                                     "    - {cidr: 127.0.0.0/8, action: deny}\n    - {cidr: \"::1/128\", action: deny}\n");
  std::string script;
  for (const auto& a : spellings) script += probe("connect tcp " + a + " " + port);
  script += probe("sendto :: " + port) + probe("connect tcp ::127.0.0.1 " + port) + "true";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--profile", prof, "--", "sh", "-c", script});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  std::vector<std::string> want(spellings.size(), "connect error EPERM");
  want.push_back("sendto error EPERM");
  want.push_back("connect error EPERM");
  EXPECT_EQ(testing::lines(r.out), want) << r.err;
  auto v = violation_lines(r.err);
  ASSERT_EQ(v.size(), want.size()) << r.err;
  for (const std::string& what : {"connect [::]:" + port + "/tcp", "connect 0.0.0.0:" + port + "/tcp",
                                  "connect ::ffff:0.0.0.0:" + port + "/tcp", "sendmsg [::]:" + port + "/udp",
                                  "connect [::127.0.0.1]:" + port + "/tcp"}) {
    bool found = false;
    for (const auto& l : v)
      found |= l.find("deny " + what) != std::string::npos && l.find("cgroup-bpf") != std::string::npos &&
               l.find("reaches this host") != std::string::npos;
    EXPECT_TRUE(found) << "no local-host violation for " << what << "\n" << r.err;
  }
  // The alias 127.0.0.2 lies in the denied 127.0.0.0/8 itself.
  EXPECT_NE(r.err.find("deny connect 127.0.0.2:" + port + "/tcp"), std::string::npos) << r.err;

  // Allowing loopback too opens them all; a rule written for :: itself decides alone.
  auto ok = run({AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--allow-net", "[::/0]:" + port + "/tcp",
                 "--allow-net", "0.0.0.0/0:" + port + "/tcp", "--", "sh", "-c",
                 probe("connect tcp :: " + port) + probe("connect tcp 0.0.0.0 " + port) +
                     probe("connect tcp 127.0.0.2 " + port) + "true"});
  EXPECT_EQ(testing::lines(ok.out), (std::vector<std::string>{"connect ok", "connect ok", "connect ok"})) << ok.err;
  auto exact = run({AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--allow-net", "[::]:" + port + "/tcp", "--",
                    kProbe, "connect", "tcp", "::", port});
  EXPECT_EQ(exact.status, 0) << exact.out << exact.err;
  close(lfd);
}

// Families with no cgroup hook are refused at socket(2) and socketpair(2) by seccomp in
// every profiled sandbox, with a violation naming the family; the register's upper half
// cannot smuggle one past the filter. NETLINK_ROUTE, unix and inet stay usable.
TEST(NetEnforce, SocketFamiliesWithoutHooksAreRefused) {
  REQUIRE_ROOT();
  // Native control: AF_VSOCK and netlink sock_diag exist on this kernel.
  auto native = run({kProbe, "socket", "40", "1", "0"});
  bool have_vsock = native.status == 0;
  auto diag = run({kProbe, "socket", "16", "3", "4"});
  ASSERT_EQ(diag.status, 0) << "netlink sock_diag natively: " << diag.out;
  auto dir = testing::temp_dir();
  auto prof = probe_profile(dir, "    - {cidr: 127.0.0.1/32, ports: [1], protocol: tcp}\n");
  std::string script = probe("socket 40 1 0") + probe("socket 0x1000000028 1 0") + probe("socket 16 3 4") +
                       probe("socket 38 5 0") + probe("socketpair 30") + probe("socket 16 3 0") +
                       probe("socket 1 1 0") + probe("socket 2 2 0") + probe("socketpair 1") + "true";
  auto r = run({AGENTCAGE_BIN, "run", "--no-daemon", "--no-store", "--profile", prof, "--", "sh", "-c", script});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(testing::lines(r.out),
            (std::vector<std::string>{"socket error EPERM", "socket error EPERM", "socket error EPERM", "socket error EPERM",
                                      "socketpair error EPERM", "socket ok", "socket ok", "socket ok", "socketpair ok"}))
      << r.err << (have_vsock ? "" : "\n(AF_VSOCK is not available natively here)");
  for (const char* rule : {"socket with domain == AF_VSOCK", "socket with domain == AF_NETLINK, protocol != NETLINK_ROUTE",
                                  "socket with domain == AF_ALG", "socketpair with domain == AF_TIPC"}) {
    bool found = false;
    for (const auto& l : violation_lines(r.err)) found |= l.find(std::string("(seccomp, syscalls.deny: ") + rule) != std::string::npos;
    EXPECT_TRUE(found) << "no seccomp violation naming " << rule << "\n" << r.err;
  }
  EXPECT_EQ(violation_lines(r.err).size(), 5u) << r.err;
}

TEST(NetEnforce, BadRuleIsAUsageError) {
  auto r = run({AGENTCAGE_BIN, "run", "--allow-net", "127.0.0.1:70000", "--", "true"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("port '70000'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace agentcage
