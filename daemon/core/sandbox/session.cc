// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/session.h"

#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>
#include <thread>

#include "core/confine/cgroup.h"
#include "core/confine/launcher.h"
#include "core/dns/dns_guard.h"
#include "core/events/event_pipeline.h"

namespace agentcage::core {

uint64_t new_sandbox_key() {
  uint64_t k = 0;
  while (k == 0)
    if (getrandom(&k, sizeof k, 0) != sizeof k) k = static_cast<uint64_t>(::getpid()) << 32 | static_cast<uint64_t>(time(nullptr));
  return k;
}

DnsGuardOptions dns_guard_options(const NetPolicy& net, const std::string& sandbox_id, uint64_t key,
                                  const std::string& cgroup_path, BpfMonitor& mon,
                                  std::function<void(v1::Event)> emit) {
  DnsGuardOptions o;
  o.sandbox_id = sandbox_id;
  o.sandbox_key = key;
  o.cgroup_path = cgroup_path;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) o.node = host;
  o.domains = net.domains;
  o.default_action = net.default_action;
  o.audit_mode = net.audit_mode;
  o.upstreams = net.dns_resolvers;
  o.grace_s = net.learned_grace_s;
  o.learn = [&mon, key](const ac_net_learned_key& k, const ac_net_learned_value& v) {
    return mon.learn_address(key, k, v);
  };
  o.unlearn = [&mon](const ac_net_learned_key& k) { return mon.unlearn_address(k); };
  if (net.check_names) o.origin = [&mon](uint64_t cookie) { return mon.take_name_origin(cookie); };
  o.allow_unnamed = net.allow_unnamed;
  o.emit = std::move(emit);
  return o;
}

namespace {

// Reads the ring buffer until stopped, then drains what is left, through the one event
// pipeline agentcaged uses too; kernel-side losses become in-band Loss events there.
class Reader {
 public:
  Reader(BpfMonitor& mon, const SessionOptions& opts, SessionResult& res)
      : mon_(mon), opts_(opts), res_(res), pipeline_(pipeline_options(), [this](const v1::Event& ev) { deliver(ev); }) {
    base_stats_ = mon_.stats();
    base_misses_ = mon_.prog_misses();
    // Processes that already run (the sandbox's parent, every process in host mode) are
    // known from /proc; later ones from their fork/exec records.
    if (auto n = pipeline_.seed(); !n)
      spdlog::warn("process table: {}", n.error().message());
    else
      spdlog::debug("process table: {} processes from /proc", *n);
  }

  void start() {
    thread_ = std::thread([this] {
      // Test hook: a stalled consumer, so loss accounting can be tested deterministically
      // (a fast reader may otherwise keep up with any flood on an idle machine).
      if (const char* stall = getenv("AGENTCAGE_TEST_READER_STALL_MS"))
        std::this_thread::sleep_for(std::chrono::milliseconds(atoi(stall)));
      while (!stop_.load(std::memory_order_acquire)) {
        uint64_t read_at = boot_clock_ns();
        auto r = mon_.poll(50, [this](std::span<const std::byte> rec) { pipeline_.handle(rec); });
        if (!r) spdlog::warn("{}", r.error().message());
        pipeline_.flush_posted();
        pipeline_.take_summaries(mon_, read_at, false);
        report_loss();
        if (opts_.on_batch) opts_.on_batch();
      }
    });
  }

  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true, std::memory_order_release);
    mon_.wake();
    thread_.join();
    uint64_t read_at = boot_clock_ns();
    (void)mon_.drain([this](std::span<const std::byte> rec) { pipeline_.handle(rec); });
    pipeline_.flush_posted();
    pipeline_.take_summaries(mon_, read_at, true);
    report_loss();
    res_.events = pipeline_.events();
    res_.decode_errors = pipeline_.decode_errors();
    res_.prog_misses = mon_.prog_misses() - base_misses_;
    if (opts_.on_batch) opts_.on_batch();
    spdlog::debug("reader: {} events ({} of the launcher's setup dropped), kernel: submitted={} ringbuf_full={} "
                  "truncated={} read_fault={}",
                  res_.events, pipeline_.setup_dropped(), res_.kernel_stats[AC_STAT_EVENTS],
                  res_.kernel_stats[AC_STAT_RINGBUF_FULL], res_.kernel_stats[AC_STAT_TRUNCATED],
                  res_.kernel_stats[AC_STAT_READ_FAULT]);
  }

  ~Reader() { stop(); }

  // An event from agentcage's own resolver (any thread).
  void post(v1::Event ev) { pipeline_.post(std::move(ev)); }
  // The names the sandbox's resolver learned, for the records of learned destinations.
  void set_dns(std::shared_ptr<const DnsNames> n) { dns_.store(std::move(n), std::memory_order_release); }

  void set_cgroup(std::string path) { cgroup_ = std::move(path); }  // before start()
  void set_decisions(ConfineDecisions d, bool net_reported) {
    attribution_.decisions = std::make_shared<const ConfineDecisions>(std::move(d));
    attribution_.net_reported = net_reported;
  }

 private:
  // This process launches the session's one sandbox (spawn() forks it from here), and
  // only its own decisions attribute.
  PipelineOptions pipeline_options() {
    PipelineOptions o;
    o.ctx = DecodeContext::for_this_host();
    o.ctx.lsm_rule_name = [this](uint32_t id) {
      return id < opts_.lsm_deny.size() ? rule_text(opts_.lsm_deny[id]) : "inode rule " + std::to_string(id);
    };
    o.dns_name = [this](const std::string& id, const std::string& address, uint64_t at) {
      auto n = dns_.load(std::memory_order_acquire);
      return n && id == res_.sandbox_id ? n->name_of(address, at) : std::string();
    };
    o.attribution = [this](const std::string& id) {
      return id == res_.sandbox_id ? attribution_ : SandboxAttribution{};
    };
    o.kill_sandbox = [this](const std::string& id) {
      if (id != res_.sandbox_id || cgroup_.empty()) return;
      if (auto st = kill_cgroup(cgroup_); !st)
        spdlog::error("sandbox {}: actions.exec: kill: {}", id, st.error().message());
    };
    // Seeded into the table before the child exists: its exec_id is known there.
    o.launcher = [this, self = static_cast<uint32_t>(::getpid())](const std::string& id) {
      return id == res_.sandbox_id ? LauncherInfo{self, {}} : LauncherInfo{};
    };
    o.loss_sandbox_id = res_.sandbox_id;
    return o;
  }

  void deliver(const v1::Event& ev) {
    // A folded failure's violation stands for its repeats too (FileOp.repeats).
    if (ev.has_violation())
      res_.violations[ev.violation().mechanism()] += 1 + (ev.violation().has_file() ? ev.violation().file().repeats() : 0);
    if (opts_.on_event) opts_.on_event(ev);
  }

  void report_loss() {
    KernelStats now = mon_.stats();
    for (size_t i = 0; i < now.size(); ++i) res_.kernel_stats[i] = now[i] - base_stats_[i];
    pipeline_.ring_full(res_.kernel_stats[AC_STAT_RINGBUF_FULL]);
    res_.lost = pipeline_.ring_lost() + pipeline_.shed_lost();
  }

  BpfMonitor& mon_;
  const SessionOptions& opts_;
  SessionResult& res_;
  std::atomic<std::shared_ptr<const DnsNames>> dns_;
  SandboxAttribution attribution_;  // set before start(), read by the reader thread
  std::string cgroup_;               // set before start(): what actions.exec: kill kills whole
  EventPipeline pipeline_;          // reader thread only, once started
  KernelStats base_stats_{};
  uint64_t base_misses_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Status wait_for_signal() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  int sig = 0;
  if (sigwait(&set, &sig) != 0) return sys_error("sigwait");
  spdlog::info("signal {}: stopping", sig);
  return {};
}

}  // namespace

Result<SessionResult> run_session(const SessionOptions& opts) {
  SessionResult res;
  uint64_t key = opts.sandbox_key ? opts.sandbox_key : new_sandbox_key();
  res.sandbox_id = sandbox_id_string(key);

  // Signals are blocked before any thread exists, so only wait_forwarding_signals() sees them.
  block_forwarded_signals();
  ::signal(SIGPIPE, SIG_IGN);

  // Compile first: a bad policy is an error before anything is created.
  std::optional<CompiledNetPolicy> net;
  if (opts.net_policy) {
    auto c = compile(*opts.net_policy, key);
    if (!c) return std::unexpected(c.error());
    net = std::move(*c);
  }
  // Deny rules are resolved before anything starts: a path that names nothing fails the
  // run here, not after the command began unprotected.
  std::vector<InodeRule> deny;
  if (!opts.lsm_deny.empty()) {
    auto r = resolve_deny_rules(opts.argv.empty() ? 0 : key, opts.lsm_deny);
    if (!r) return std::unexpected(r.error());
    deny = std::move(*r);
  }

  std::unique_ptr<BpfMonitor> mon;
  if (opts.monitor || net || !deny.empty() || opts.exec_kill) {
    auto m = BpfMonitor::start(opts.monitor_opts);
    // Recording may degrade, enforcement fails closed: only a session that merely records
    // runs on without the monitor.
    bool optional = opts.monitor_optional && !net && deny.empty() && !opts.confine && !opts.exec_kill;
    if (!m && !optional) return std::unexpected(m.error());
    if (m) mon = std::move(*m);
    else spdlog::warn("not recording this run: {}", m.error().message());
  }
  if (mon) {
    // Fail closed: rules the kernel will not enforce must not let the command start.
    if (!deny.empty()) {
      if (auto st = mon->lsm_deny(deny); !st) return std::unexpected(st.error());
    }
  }

  if (opts.argv.empty()) {
    // Host mode with no command: record until signalled.
    if (!mon) return error("no command given");
    Reader reader(*mon, opts, res);
    reader.start();
    auto st = wait_for_signal();
    reader.stop();
    if (!st) return std::unexpected(st.error());
    return res;
  }

  std::string parent = opts.cgroup_parent;
  if (parent.empty()) {
    auto root = cgroup2_mount();
    if (!root) return std::unexpected(root.error());
    parent = *root + "/agentcage";
  }
  auto cg = Cgroup::create(parent + "/" + res.sandbox_id);
  if (!cg) return std::unexpected(cg.error());
  if (opts.on_cgroup) opts.on_cgroup(cg->path());
  // The sandbox's resolver (network.domains): bound before the policy is installed, since
  // the kernel sends its queries to this port; started once there is a reader.
  std::unique_ptr<DnsGuard> dns;
  std::atomic<Reader*> dns_reader{nullptr};
  if (mon && net && !opts.net_policy->domains.empty()) {
    auto g = DnsGuard::create(dns_guard_options(*opts.net_policy, res.sandbox_id, key, cg->path(), *mon,
                                                [&dns_reader](v1::Event ev) {
                                                  if (Reader* r = dns_reader.load()) r->post(std::move(ev));
                                                }));
    if (!g) return std::unexpected(g.error());
    dns = std::move(*g);
    net->sandbox.dns_port = dns->port();
    net->sandbox.dns_port6 = dns->port6();
    net->sandbox.name_port = dns->name_port();
    net->sandbox.name_port6 = dns->name_port6();
  }
  if (mon) {
    const bool audit = opts.confine && opts.confine->audit_mode;
    if (auto st = mon->track_cgroup(cg->id(), key,
                                    (opts.exec_kill ? AC_SB_EXEC_KILL : 0) | (audit ? AC_SB_AUDIT_SYSCALLS : 0));
        !st)
      return std::unexpected(st.error());
    // Enforcement fails closed: no policy in the kernel, no child.
    if (net) {
      if (auto st = mon->install_net_policy(key, *net); !st) {
        (void)mon->remove_net_policy(key, *net);
        (void)mon->untrack_cgroup(cg->id(), key);
        return std::unexpected(st.error());
      }
      spdlog::debug("sandbox {}: network policy installed ({} prefixes, {} unix names, default {}{}), enforced by "
                    "cgroup-bpf (connect4/6, sendmsg4/6, bind4/6, sock_create{})",
                    res.sandbox_id, net->rules.size(), net->unix_allow.size(),
                    to_string(opts.net_policy->default_action), opts.net_policy->audit_mode ? ", audit mode" : "",
                    mon->has_unix_hooks() ? ", connect_unix, sendmsg_unix" : "");
    }
  }

  std::unique_ptr<PreparedConfinement> conf;
  if (opts.confine) {
    if (auto ok = check_command_allowed(*opts.confine, opts.argv[0], opts.env ? &*opts.env : nullptr); !ok)
      return std::unexpected(ok.error());
    auto pc = prepare_confinement(*opts.confine, probe_kernel_features(), ConfineContext{res.sandbox_id, cg->path()});
    if (!pc) return std::unexpected(pc.error());
    conf = std::move(*pc);
    res.enforcement = conf->provenance();
    if (mon && opts.confine->audit_mode) {
      // What seccomp only logs in audit mode, recorded by the sys_exit program instead.
      std::vector<int> nrs;
      for (const auto& d : conf->seccomp().denied) nrs.push_back(d.nr);
      if (auto st = mon->set_audit_syscalls(key, nrs); !st) return std::unexpected(st.error());
    }
    if (opts.on_confined) opts.on_confined(*conf);
  }

  SpawnOptions so;
  so.argv = opts.argv;
  so.cgroup_fd = cg->fd();
  so.cgroup_path = cg->path();
  so.child_setup = opts.child_setup;
  so.keep_fds = opts.pass_fds;
  so.env = opts.env;
  so.pid_namespace = opts.confine && opts.confine->namespaces.pid;
  if (conf) {
    // Runs in the child: the caller's hook first, then the confinement steps.
    so.child_setup = [user = opts.child_setup, c = conf.get()](const char** what) -> int {
      if (user)
        if (int e = user(what)) return e;
      return apply_in_child(*c, what);
    };
  }
  // Spawn before the reader thread starts: the child is forked from a single-threaded
  // process. Records it produces meanwhile wait in the ring buffer.
  // The reader's counter baseline and process table are taken before the child exists,
  // so nothing it does (or loses) falls before the baseline; its thread starts after.
  std::optional<Reader> reader;
  if (mon) reader.emplace(*mon, opts, res);
  // Before the command can change them: what the workspace's git configuration runs now.
  std::vector<GitConfigSnapshot> git_before;
  for (const auto& w : opts.git_review) git_before.push_back(snapshot_git_config(w, opts.git_review_uid));
  if (reader && conf) reader->set_decisions(conf->decisions(), net.has_value());
  if (reader) reader->set_cgroup(cg->path());
  auto child = spawn(so);
  if (!child) return std::unexpected(child.error());
  if (reader) reader->start();
  // After the fork, like the reader: queries the child sends meanwhile wait in the socket.
  if (dns && reader) {
    dns_reader.store(&*reader);
    reader->set_dns(dns->names());
    dns->start();
  }
  auto status = wait_forwarding_signals(*child);

  // Nothing the command started outlives it: kill and remove the cgroup, then let the
  // reader collect the exits that produced.
  auto st = cg->destroy();
  if (!st) spdlog::error("{}", st.error().message());
  conf.reset();  // after the kill: removes the v1 pids cgroup and the mask scratch files
  if (dns) dns->stop();  // before the reader's last flush: its events are in it
  // Nothing of the sandbox runs any more: what it left in the git configuration is final.
  if (reader) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    for (size_t i = 0; i < opts.git_review.size(); ++i)
      for (const auto& c : git_config_changes(git_before[i], snapshot_git_config(opts.git_review[i], opts.git_review_uid)))
        reader->post(git_change_event(c, res.sandbox_id, host));
  }
  if (reader) reader->stop();
  if (mon && net) (void)mon->remove_net_policy(key, *net);
  if (mon) (void)mon->untrack_cgroup(cg->id(), key);
  if (mon) (void)mon->lsm_forget(deny);
  if (!status) return std::unexpected(status.error());
  res.exit_status = *status;
  return res;
}

}  // namespace agentcage::core
