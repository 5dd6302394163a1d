// SPDX-License-Identifier: Apache-2.0
// agentcage's resolver for one sandbox with network.domains rules.
//
// The kernel sends every DNS query of the sandbox here, whatever address the process
// addressed (bpf/net.bpf.c, ac_dns_redirect: connect/sendmsg to port 53 are rewritten to
// 127.0.0.1 / ::1 on this guard's port). A name a rule allows is forwarded to the
// upstream resolvers and its A/AAAA answers go into the kernel's learned map for the TTL
// plus the grace, on the rule's ports; any other name is answered REFUSED and never
// leaves the host, and each refusal is a violation (mechanism "dns") naming it. Every
// query is also an event. So a DNS tunnel is a burst of refused names that reached no one.
//
// One thread per guard; queries are answered one at a time (an upstream that does not
// answer costs each query its timeout, 2 s per upstream). TCP clients are served on the
// same port, forwarded over TCP.
#pragma once

#include <agentcage/abi.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "core/base/result.h"
#include "core/policy/net_policy.h"

namespace agentcage::core {

// Address text -> the allowed names it was learned from, oldest first, each with when
// (boot time): the pipeline names a record after the event, and one address serves many
// names (a CDN), so the name is the one learned last before the event. Shared: it
// outlives the guard, since the reader may still be naming a closed sandbox's last
// events after its resolver stopped. Any thread.
class DnsNames {
 public:
  void add(const std::string& address, const std::string& name, uint64_t at_ns);
  void forget(const std::string& address);
  // The name `address` was last learned from at or before `ktime_ns`; "" if none.
  std::string name_of(const std::string& address, uint64_t ktime_ns) const;

 private:
  struct Named {
    std::string name;
    uint64_t at_ns = 0;
  };
  static constexpr size_t kPerAddress = 8;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Named>> names_;
};

struct DnsGuardOptions {
  std::string sandbox_id;
  uint64_t sandbox_key = 0;
  std::string cgroup_path;  // the sandbox's cgroup: which process asked (empty: unknown)
  std::string node;         // host name for events
  std::vector<DomainRule> domains;
  NetAction default_action = NetAction::deny;  // names no rule names
  bool audit_mode = false;                     // refuse nothing, report what would be
  std::vector<std::string> upstreams;          // IP addresses, queried on port 53 in order
  uint32_t grace_s = 30;
  int upstream_timeout_ms = 2000;
  // Writes one learned address into the kernel (BpfMonitor::learn_address).
  std::function<Status(const ac_net_learned_key&, const ac_net_learned_value&)> learn;
  // Deletes one learned address from the kernel once it expired (BpfMonitor::unlearn_address).
  std::function<Status(const ac_net_learned_key&)> unlearn;
  // Events and violations, from the guard's thread (EventPipeline::post).
  std::function<void(v1::Event)> emit;
  // The name check (name_check.h): where a connect the kernel redirected to it was going,
  // by the client socket's cookie (BpfMonitor::take_name_origin). Unset: no name check.
  std::function<std::optional<ac_name_orig>(uint64_t cookie)> origin;
  bool allow_unnamed = false;   // a connection naming no host is let on
  int name_timeout_ms = 10000;  // for the first bytes, and for the connect to the server
  int idle_timeout_ms = 600000; // a spliced connection idle both ways this long is closed
};

class DnsGuard {
 public:
  // Binds 127.0.0.1 (and ::1 where it exists) on one free port, UDP and TCP.
  static Result<std::unique_ptr<DnsGuard>> create(DnsGuardOptions opts);
  ~DnsGuard();
  DnsGuard(const DnsGuard&) = delete;
  DnsGuard& operator=(const DnsGuard&) = delete;

  uint16_t port() const;   // on 127.0.0.1
  uint16_t port6() const;  // on ::1; 0 when the host has no IPv6 loopback
  // The name check's TCP ports on 127.0.0.1 and ::1; 0: none (no origin, or no ::1).
  uint16_t name_port() const;
  uint16_t name_port6() const;
  void start();
  void stop();

  // The names its answers taught (as the net records spell the addresses; CLOCK_BOOTTIME).
  std::shared_ptr<const DnsNames> names() const;

  // Counters, for tests and status.
  uint64_t queries() const;
  uint64_t refused() const;
  uint64_t forwarded() const;
  uint64_t names_refused() const;  // name check: connections refused
  uint64_t names_spliced() const;  // name check: connections carried on

  struct Impl;

 private:
  explicit DnsGuard(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentcage::core
