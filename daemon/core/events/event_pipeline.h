// SPDX-License-Identifier: Apache-2.0
// The one event pipeline, for agentcaged and for in-process runs alike: a ring-buffer
// record is decoded, enriched through the process table (exec_id, parent_exec_id, binary,
// argv, cwd, comm), dropped when it is agentcage's own launcher setup, handed to the sink,
// and, when it is a denial the kernel does not report itself, followed by the violation
// attributed from the sandbox's compiled profile. What cannot be delivered (an undecodable
// record, records the kernel could not queue) becomes an in-band Loss event.
//
// Reader-thread only, like the process table it owns; the counters may be read from any
// thread.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "agentcage/abi.h"
#include "core/base/result.h"
#include "core/confine/confine.h"
#include "core/events/decoder.h"
#include "core/events/process_table.h"

namespace agentcage::core {

// CLOCK_BOOTTIME ns, the kernel records' clock: what take_summaries() is given.
inline uint64_t boot_clock_ns() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// What attributing a sandbox's denials needs: the decisions of its one compiled profile
// (null: nothing to attribute) and whether its network policy's cgroup-BPF programs
// report their own denials.
struct SandboxAttribution {
  std::shared_ptr<const ConfineDecisions> decisions;
  bool net_reported = false;
};

// The process that launched a sandbox's command: the in-process launcher, or the client
// whose held child agentcaged placed in the sandbox.
struct LauncherInfo {
  uint32_t pid = 0;  // 0: unknown
  // Its exec_id when known beforehand: a daemon client is not tracked and may be gone
  // by the time its child's first record is read. Empty: the process table knows it
  // (seeded) or looks it up in /proc then.
  std::string exec_id;
};

struct PipelineOptions {
  DecodeContext ctx;
  // Where the process table is seeded from (seed()) and where a parent it never saw is
  // looked up; empty: neither (unit tests of the pure logic).
  std::string proc_root = "/proc";
  // The attribution of a sandbox's events, asked for every event of a sandbox. Unset:
  // nothing is attributed.
  std::function<SandboxAttribution(const std::string& sandbox_id)> attribution;
  // actions.exec: kill: the kernel killed a refused exec's caller (Exec.killed) and marked
  // its ancestors, which die on the way out of their current syscall; called then, so the
  // rest of the sandbox (a parent blocked in a syscall that does not return, siblings) is
  // killed too. Unset: nothing more is killed.
  std::function<void(const std::string& sandbox_id)> kill_sandbox;
  // Who launched a sandbox's command. Asked rarely: when a process appears in a sandbox
  // from outside it. Unset: nothing is filtered as setup.
  std::function<LauncherInfo(const std::string& sandbox_id)> launcher;
  // network.domains: the allowed name an address of the sandbox was learned from before
  // `ktime_ns` (the event's boot time; "" if none), asked for learned connects and network
  // violations (NetOp.name). The reader lags the kernel: a connect made before its name
  // resolved must not read as that name.
  std::function<std::string(const std::string& sandbox_id, const std::string& address, uint64_t ktime_ns)> dns_name;
  // The sandbox kernel losses are charged to (an in-process run's one sandbox); empty
  // when the ring serves many (the daemon).
  std::string loss_sandbox_id;
};

class EventPipeline {
 public:
  using Sink = std::function<void(const v1::Event&)>;

  EventPipeline(PipelineOptions opts, Sink sink);

  // Reads the processes that already run into the table; how many.
  Result<size_t> seed();
  // One ring-buffer record: its event (unless setup), then its attributed violation.
  void handle(std::span<const std::byte> rec);
  // `total`: the kernel's ring-full counter since this pipeline's baseline. Emits one Loss
  // event for what it counted since the last call; returns that count (0: nothing new).
  uint64_t ring_full(uint64_t total);

  // The kernel folds a thread's repeated identical failures (bpf/include/agentcage/abi.h,
  // ac_fold): `count` of them after its last record, swept from the map once idle past
  // the window. Delivered as that failure again (its last time, FileOp.repeats = count - 1)
  // with its violation, from the record this pipeline last saw for the key; a count
  // whose record is not known (evicted here, or read by an earlier daemon) is a Loss.
  void folded(const ac_fold_key& key, const ac_fold_value& value);
  // Records the kernel refused to keep its ring's reserve (ac_shed), for a sandbox key
  // (0: host mode): one Loss event, reason ringbuf_shed, charged to that sandbox.
  void shed(uint64_t sandbox_key, uint64_t count);
  // Both from the monitor (BpfMonitor::take_summaries), after a poll or drain that began
  // at `read_before_ns` (CLOCK_BOOTTIME); `all` at the end of a run.
  template <class Monitor>
  void take_summaries(Monitor& mon, uint64_t read_before_ns, bool all) {
    mon.take_summaries(
        read_before_ns, all, [this](const ac_fold_key& k, const ac_fold_value& v) { folded(k, v); },
        [this](uint64_t sandbox_key, uint64_t n) { shed(sandbox_key, n); });
  }

  // An event made outside the kernel (agentcage's DNS resolver), from any thread. Kept
  // until the reader's next flush_posted(), which stamps its process from the table (by
  // pid) and delivers it like a decoded record; bounded: what does not fit is a Loss.
  void post(v1::Event ev);
  // Reader thread: delivers what post() queued.
  void flush_posted();

  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  uint64_t decode_errors() const { return decode_errors_.load(std::memory_order_relaxed); }
  uint64_t setup_dropped() const { return setup_dropped_.load(std::memory_order_relaxed); }
  uint64_t ring_lost() const { return ring_lost_.load(std::memory_order_relaxed); }
  uint64_t shed_lost() const { return shed_lost_.load(std::memory_order_relaxed); }
  const ProcessTable& processes() const { return procs_; }

 private:
  struct Launcher {
    LauncherInfo info;
    bool child_seen = false;  // its one child in the sandbox was found
  };
  struct SetupProcess {
    std::string exec_id;
    std::string launcher_exec_id;  // named as the parent at its exec (empty: the table knows)
    bool under_init = false;       // forked by the sandbox's init: the launcher replaces it as parent
  };
  bool is_setup(v1::Event& ev);
  const LauncherInfo* starts_setup(const std::string& sandbox_id, uint32_t parent_pid);
  void attribute(const v1::Event& ev);
  void name_destination(v1::Event& ev);

  PipelineOptions opts_;
  Sink sink_;
  ProcessTable procs_;
  v1::Event ev_;  // reused for every record: no allocation per record in the steady state
  // Launcher children before their first exec, by pid. At most one per sandbox.
  std::unordered_map<uint32_t, SetupProcess> setup_;
  // Per sandbox, asked once (bounded: cleared when large; see starts_setup()).
  std::unordered_map<std::string, Launcher> launchers_;
  std::atomic<uint64_t> events_{0}, decode_errors_{0}, setup_dropped_{0}, ring_lost_{0}, shed_lost_{0};
  // The last delivered record of each folding failure (AC_F_FOLDED), by its ac_fold key,
  // for folded(). Bounded like the kernel map it mirrors.
  struct FoldId {
    uint32_t tid, nr;
    int32_t result;
    uint64_t hash;
    bool operator==(const FoldId&) const = default;
  };
  struct FoldIdHash {
    size_t operator()(const FoldId& f) const { return std::hash<uint64_t>()(f.hash ^ (uint64_t{f.tid} << 32 | f.nr)); }
  };
  std::unordered_map<FoldId, v1::Event, FoldIdHash> fold_last_;
  void remember_fold(std::span<const std::byte> rec);
  std::mutex posted_mu_;
  std::vector<v1::Event> posted_;  // guarded by posted_mu_
  uint64_t posted_lost_ = 0;       // guarded by posted_mu_
};

}  // namespace agentcage::core
