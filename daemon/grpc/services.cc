// SPDX-License-Identifier: Apache-2.0
#include "grpc/services.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <malloc.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <pwd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <list>
#include <thread>
#include <filesystem>
#include <mutex>
#include <set>

#include "core/store/process_tree.h"
#include "core/policy/profile.h"
#include "core/sandbox/sandbox_policy.h"

namespace agentcage::grpcapi {
namespace {

using grpc::StatusCode;


grpc::ServerUnaryReactor* done(grpc::CallbackServerContext* ctx, const grpc::Status& st) {
  auto* r = ctx->DefaultReactor();
  r->Finish(st);
  return r;
}

grpc::Status internal(const core::Error& e) { return {StatusCode::INTERNAL, e.message()}; }

// Resolves the caller; an unknown connection (should not happen) gets UNAUTHENTICATED.
std::optional<core::Peer> caller(grpc::CallbackServerContext* ctx, PeerTable& peers, grpc::Status* st) {
  auto p = peers.lookup(ctx->peer());
  if (!p) *st = grpc::Status(StatusCode::UNAUTHENTICATED, "caller credentials unknown (connect over the Unix socket)");
  return p;
}

// A process inside a sandbox may change no sandbox, whatever its uid: an agent must not
// be able to widen or end its own confinement through the daemon.
grpc::Status may_change(const core::Peer& p) {
  if (!core::SandboxRegistry::may_change(p))
    return {StatusCode::PERMISSION_DENIED,
            "callers inside a sandbox (or whose connecting process was gone when the connection was accepted) may "
            "not create or change sandboxes"};
  return grpc::Status::OK;
}

grpc::Status may_see(const core::Peer& p, core::Daemon& d, const std::string& id) {
  if (!valid_sandbox_id(id)) return {StatusCode::INVALID_ARGUMENT, "sandbox_id: expected 16 hex digits, got '" + id.substr(0, 64) + "'"};
  auto owner = d.sandbox_owner(id);  // the registry's, or the store's record after a restart
  if (!owner) return {StatusCode::NOT_FOUND, "no sandbox " + id};
  if (!p.root() && *owner != p.uid) return {StatusCode::PERMISSION_DENIED, "sandbox " + id + " belongs to another user"};
  return grpc::Status::OK;
}

}  // namespace

bool valid_sandbox_id(const std::string& id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string kind_name(const v1::Event& ev) {
  auto k = core::event_kind(ev);
  return k.empty() ? "unknown" : k;
}

std::string validate_filter(const v1::EventFilter& f) {
  if (f.sandbox_ids_size() > kMaxFilterIds) return "filter.sandbox_ids: at most " + std::to_string(kMaxFilterIds) + " ids";
  for (const auto& id : f.sandbox_ids())
    if (!valid_sandbox_id(id)) return "filter.sandbox_ids: '" + id.substr(0, 64) + "' is not a sandbox id (16 hex digits)";
  if (f.kinds_size() > 16) return "filter.kinds: too many entries";
  for (const auto& k : f.kinds())
    if (std::ranges::find(core::event_kinds(), k) == core::event_kinds().end())
      return "filter.kinds: unknown kind '" + k.substr(0, 64) + "' (" + core::event_kinds_joined() + ")";
  if (f.until_ns() && f.since_ns() > f.until_ns()) return "filter: since_ns is after until_ns";
  return {};
}

bool filter_matches(const v1::EventFilter& f, const v1::Event& ev) {
  if (ev.has_loss()) return true;  // a gap is everyone's business
  if (f.violations_only() && !ev.has_violation()) return false;
  if (f.sandbox_ids_size()) {
    bool hit = false;
    for (const auto& id : f.sandbox_ids()) hit |= id == ev.sandbox_id();
    if (!hit) return false;
  }
  if (f.kinds_size()) {
    auto k = kind_name(ev);
    bool hit = false;
    for (const auto& want : f.kinds()) hit |= want == k;
    if (!hit) return false;
  }
  if (f.since_ns() && ev.time_ns() < f.since_ns()) return false;
  if (f.until_ns() && ev.time_ns() > f.until_ns()) return false;
  return true;
}

// ---- Control ----

grpc::ServerUnaryReactor* ControlService::CreateSandbox(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateSandboxRequest* req, v1::Sandbox* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (st = may_change(*p); !st.ok()) return done(ctx, st);
  if (req->profile().size() > kMaxString) return done(ctx, {StatusCode::INVALID_ARGUMENT, "profile: too long"});
  if (req->workspace().size() > kMaxString) return done(ctx, {StatusCode::INVALID_ARGUMENT, "workspace: too long"});
  if (!req->workspace().empty() && req->workspace()[0] != '/')
    return done(ctx, {StatusCode::INVALID_ARGUMENT, "workspace: must be an absolute path"});
  if (static_cast<size_t>(req->argv_size()) > kMaxArgv) return done(ctx, {StatusCode::INVALID_ARGUMENT, "argv: too many arguments"});
  if (req->has_launch()) {
    const auto& l = req->launch();
    if (req->profile().empty())
      return done(ctx, {StatusCode::INVALID_ARGUMENT, "launch: needs a profile (without one the client starts its command)"});
    if (req->argv_size() == 0) return done(ctx, {StatusCode::INVALID_ARGUMENT, "argv: the command to launch is required"});
    if (static_cast<size_t>(l.env_size()) > kMaxArgv) return done(ctx, {StatusCode::INVALID_ARGUMENT, "launch.env: too many variables"});
    if (static_cast<size_t>(l.pass_env_size()) > kMaxArgv)
      return done(ctx, {StatusCode::INVALID_ARGUMENT, "launch.pass_env: too many names"});
    if (static_cast<size_t>(l.pass_fds_size()) > core::kMaxLaunchFds)
      return done(ctx, {StatusCode::INVALID_ARGUMENT, fmt::format("launch.pass_fds: at most {} descriptors", core::kMaxLaunchFds)});
    for (int fd : l.pass_fds())
      if (fd <= 2 || fd > 1'000'000)
        return done(ctx, {StatusCode::INVALID_ARGUMENT,
                          fmt::format("launch.pass_fds: {} is not a descriptor to pass (0-2 always are; above 2)", fd)});
  }
  if (req->has_network()) {
    const auto& n = req->network();
    if (static_cast<size_t>(n.allow_size() + n.allow_unix_size() + n.allow_domain_size() + n.dns_size()) > kMaxArgv)
      return done(ctx, {StatusCode::INVALID_ARGUMENT, "network: too many rules"});
  }
  // A profile is resolved for the caller (its workspace, home and user), never the daemon.
  std::optional<core::SandboxPolicy> policy;
  v1::Profile resolved;  // recorded with the sandbox, so a restarted daemon enforces the same
  if (!req->profile().empty()) {
    // The daemon reads profile files as root: a caller names a profile on the search
    // path, not an arbitrary file (its parse errors would echo the file's lines).
    if (core::is_profile_path(req->profile()) && !p->root())
      return done(ctx, {StatusCode::PERMISSION_DENIED, "profile: only root may name a profile file by path; "
                                                       "name a profile on the search path"});
    if (req->workspace().empty())
      return done(ctx, {StatusCode::INVALID_ARGUMENT, "workspace: required with a profile"});
    core::ProfileVars vars;
    vars.workspace = req->workspace();
    vars.tmpdir = "/tmp";
    passwd pw{}, *res = nullptr;
    char buf[4096];
    if (getpwuid_r(p->uid, &pw, buf, sizeof buf, &res) != 0 || !res)
      return done(ctx, {StatusCode::FAILED_PRECONDITION, fmt::format("uid {} has no passwd entry", p->uid)});
    vars.home = pw.pw_dir;
    vars.user = pw.pw_name;
    vars.uid = p->uid;  // only profiles root or the caller owns, and no one else can write
    auto r = core::resolve_profile(req->profile(), vars);
    if (!r) return done(ctx, {StatusCode::INVALID_ARGUMENT, r.error().message()});
    // Never dropped, never merged: the profile's network section decides, amended only by
    // names the caller adds (`--allow-domain`), which are then part of the recorded profile.
    if (req->has_network()) {
      const auto& n = req->network();
      if (n.allow_size() || n.allow_unix_size() || !n.default_action().empty() || n.dns_size())
        return done(ctx, {StatusCode::INVALID_ARGUMENT, "network: the profile's network section decides the network "
                                                        "policy; drop the network options (all but allow_domain) or "
                                                        "the profile"});
      std::vector<std::string> names(n.allow_domain().begin(), n.allow_domain().end());
      if (auto added = core::add_allowed_domains(r->profile, names, "network.allow_domain"); !added)
        return done(ctx, {StatusCode::INVALID_ARGUMENT, added.error().message()});
    }
    // A launched command's environment is the caller's, filtered by the profile here as
    // the in-process path filters its own.
    core::PolicyContext pctx;
    if (req->has_launch()) {
      pctx.env.assign(req->launch().env().begin(), req->launch().env().end());
      pctx.pass_env.assign(req->launch().pass_env().begin(), req->launch().pass_env().end());
    }
    auto c = core::compile_profile(r->profile, pctx);
    if (!c) return done(ctx, {StatusCode::INVALID_ARGUMENT, c.error().message()});
    policy = std::move(*c);
    resolved = std::move(r->profile);
  }
  if (req->has_network() && !policy) {
    auto net = core::net_policy_from_flags(core::net_flags(req->network()),
                                           {"network.allow", "network.allow_unix", "network.default_action",
                                            "network.allow_domain", "network.dns"});
    if (!net) return done(ctx, {StatusCode::INVALID_ARGUMENT, net.error().message()});
    policy.emplace();
    policy->net = std::move(*net);
  }
  // One engine: a profiled command is started by the daemon with the whole profile, never
  // by a client applying what it can to itself.
  if (!req->profile().empty() && !req->has_launch())
    return done(ctx, {StatusCode::INVALID_ARGUMENT, "launch: a sandbox with a profile is started by the daemon "
                                                    "(set launch; `agentcage run --profile` does)"});
  auto sb = d_.registry().create(*p, *req, policy ? &*policy : nullptr, req->profile().empty() ? nullptr : &resolved);
  if (!sb)
    return done(ctx, {sb.error().context.find(core::kSandboxQuota) != std::string::npos ? StatusCode::RESOURCE_EXHAUSTED
                      : policy                  ? StatusCode::FAILED_PRECONDITION
                                                : StatusCode::INTERNAL,
                      sb.error().message()});
  *resp = *sb;
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::PlaceProcess(grpc::CallbackServerContext* ctx,
                                                       const v1::PlaceProcessRequest* req, v1::PlaceProcessResponse*) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (st = may_change(*p); !st.ok()) return done(ctx, st);
  if (st = may_see(*p, d_, req->sandbox_id()); !st.ok()) return done(ctx, st);
  if (req->pid() == 0) return done(ctx, {StatusCode::INVALID_ARGUMENT, "pid: required"});
  if (auto r = d_.registry().place(*p, req->sandbox_id(), static_cast<pid_t>(req->pid())); !r)
    return done(ctx, {StatusCode::FAILED_PRECONDITION, r.error().message()});
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::CloseSandbox(grpc::CallbackServerContext* ctx,
                                                       const v1::CloseSandboxRequest* req, v1::CloseSandboxResponse*) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (st = may_change(*p); !st.ok()) return done(ctx, st);
  if (st = may_see(*p, d_, req->sandbox_id()); !st.ok()) return done(ctx, st);
  if (auto r = d_.registry().close(req->sandbox_id(), req->exit_status()); !r) return done(ctx, internal(r.error()));
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::ListSandboxes(grpc::CallbackServerContext* ctx,
                                                        const v1::ListSandboxesRequest* req,
                                                        v1::ListSandboxesResponse* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  constexpr uint32_t kDefaultLimit = 1000, kMaxLimit = 10000;
  constexpr size_t kMaxReplyBytes = 3u << 20;
  if (req->limit() > kMaxLimit)
    return done(ctx, {StatusCode::INVALID_ARGUMENT,
                      "limit: at most " + std::to_string(kMaxLimit) + ", got " + std::to_string(req->limit())});
  const uint32_t limit = req->limit() ? req->limit() : kDefaultLimit;
  auto uid = p->root() ? std::nullopt : std::optional<uid_t>(p->uid);
  auto list = d_.registry().list(uid, req->all());
  // --all: also what ended before this daemon started, from the store's records.
  if (req->all())
    for (auto& s : d_.recorded_sandboxes(uid)) list.push_back(std::move(s));
  // Newest first, so what is cut is the oldest.
  std::stable_sort(list.begin(), list.end(),
                   [](const v1::Sandbox& a, const v1::Sandbox& b) { return a.created_ns() > b.created_ns(); });
  resp->set_total(static_cast<uint32_t>(list.size()));
  size_t bytes = 0;
  for (auto& s : list) {
    size_t n = s.ByteSizeLong() + 8;  // + the field's tag and length
    if (static_cast<uint32_t>(resp->sandboxes_size()) >= limit || bytes + n > kMaxReplyBytes) {
      resp->set_truncated(true);
      break;
    }
    bytes += n;
    *resp->add_sandboxes() = std::move(s);
  }
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::GetSandbox(grpc::CallbackServerContext* ctx, const v1::GetSandboxRequest* req,
                                                     v1::Sandbox* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (st = may_see(*p, d_, req->sandbox_id()); !st.ok()) return done(ctx, st);
  auto sb = d_.registry().get(req->sandbox_id());
  if (sb) {
    *resp = *sb;
  } else if (auto rec = d_.recorded_sandbox(req->sandbox_id())) {
    *resp = *rec;
    if (resp->state() != "closed") resp->set_state("closed (daemon restarted)");
  } else {
    return done(ctx, {StatusCode::NOT_FOUND, sb.error().message()});
  }
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::Status(grpc::CallbackServerContext* ctx, const v1::StatusRequest*,
                                                 v1::StatusResponse* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  const auto& c = d_.decode_context();
  resp->set_version("0.1.0");
  resp->set_node(c.node);
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  resp->set_uptime_ns(now - d_.start_time_ns());
  resp->set_host_mode(d_.options().host_mode);
  resp->set_sandboxes(static_cast<uint32_t>(d_.registry().running()));
  resp->set_subscribers(static_cast<uint32_t>(d_.hub().size()));
  auto counter = [&](std::string name, uint64_t v) {
    auto* k = resp->add_counters();
    k->set_name(std::move(name));
    k->set_value(v);
  };
  counter("events", d_.events());
  counter("decode_errors", d_.decode_errors());
  if (auto ss = d_.store_stats()) {
    counter("store.stored", ss->stored);
    counter("store.dropped.queue_full", ss->queue_full);
    counter("store.dropped.not_stored", ss->not_stored);
    counter("store.append_errors", ss->errors);
    if (ss->failing_reason.empty()) {
      resp->set_store_state("ok");
    } else {
      time_t t = static_cast<time_t>(ss->failing_since_ns / 1'000'000'000ull);
      char when[32];
      tm tmv{};
      gmtime_r(&t, &tmv);
      strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
      resp->set_store_state(fmt::format("failing since {}: {}: {}", when, ss->failing_reason,
                                        p->root() ? ss->failing_message : "(details for root)"));
    }
  }
  if (auto* store = d_.store(); store && !store->origin_notice().empty())
    resp->set_store_origin(p->root() ? store->origin_notice() : "a new or rolled-back store (details for root)");
  for (auto& [name, value] : d_.extra_counters()) counter(std::move(name), value);
  if (auto* m = d_.monitor()) {
    auto ks = m->stats();
    for (int i = 0; i < AC_STAT_MAX; ++i) counter(std::string("kernel.") + core::stat_name(i), ks[i]);
  }
  // Per-sink queues are visible to root only: they name other users' subscriptions.
  if (p->root())
    for (const auto& s : d_.hub().stats()) {
      counter("sink." + s.name + ".depth", s.depth);
      counter("sink." + s.name + ".dropped", s.dropped);
    }
  auto entry = [&](const char* concern, const char* mech, bool avail, const char* note = "") {
    auto* e = resp->add_enforcement();
    e->set_concern(concern);
    e->set_mechanism(mech);
    e->set_available(avail);
    e->set_note(note);
  };
  bool mon = d_.monitor() != nullptr;
  entry("exec/fork/exit observed", "tp_btf/sched_process_{exec,fork,exit}", mon);
  entry("sandbox containment", "cgroup v2 (cgroup.kill on close)", true);
  entry("file/exec deny by inode", "bpf-lsm: lsm/file_open, lsm/bprm_check_security",
        mon && d_.monitor()->lsm_active(), mon ? d_.monitor()->lsm_status().c_str() : "no kernel monitor");
  return done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ControlService::ReloadProfiles(grpc::CallbackServerContext* ctx,
                                                         const v1::ReloadProfilesRequest*, v1::ReloadProfilesResponse* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (!p->root()) return done(ctx, {StatusCode::PERMISSION_DENIED, "reloading profiles is root's"});
  // Profiles are read per sandbox at creation, so nothing is cached: a reload is a check
  // that every profile the next sandbox could name resolves (extends, variables, rules),
  // so an operator learns about a broken edit now rather than at the next agent start.
  auto vars = core::ProfileVars::from_environment("/WORKSPACE");
  std::set<std::string> seen;  // a name earlier on the search path shadows later ones
  std::string errors;
  uint32_t ok = 0, bad = 0;
  const auto search = core::profile_search_path();
  for (const auto& dir : search) {
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::string name = f.stem().string();
      if (!seen.insert(name).second) continue;
      // The whole path, as a sandbox would: `extends` may name a base found elsewhere.
      auto r = core::resolve_profile(name, vars, search);
      if (r) {
        ++ok;
      } else {
        ++bad;
        if (errors.size() < 8192) errors += r.error().message() + "\n";
      }
    }
  }
  resp->set_profiles(ok);
  if (bad)
    return done(ctx, {StatusCode::FAILED_PRECONDITION,
                      fmt::format("{} of {} profiles on the search path do not resolve:\n{}", bad, ok + bad, errors)});
  return done(ctx, grpc::Status::OK);
}

// ---- Events ----

namespace {

// Streams live events from the hub. Writes are driven by the hub's notify callback and
// by OnWriteDone, one write in flight at a time; the subscriber's bounded queue absorbs
// bursts, and overflow is reported to this client as a Loss event, never blocking the
// kernel reader.
class SubscribeReactor : public grpc::ServerWriteReactor<v1::Event> {
 public:
  // With a store and from_seq > 0 the stream first replays stored events from from_seq
  // (subscribed to live events before the replay starts, so nothing falls in between),
  // then continues live, skipping live events the replay already sent.
  SubscribeReactor(grpc::CallbackServerContext* ctx, core::EventHub& hub, std::string name,
                   core::Subscription::Filter filter, core::EventStore* store, uint64_t from_seq, size_t max_bytes,
                   std::function<void()> on_done)
      : hub_(hub), state_(std::make_shared<State>()), on_done_(std::move(on_done)) {
    state_->self = this;
    state_->ctx = ctx;
    state_->name = name;
    // Connections come from UdsServer, whose peers read "fd:N".
    if (const std::string peer = ctx->peer(); peer.rfind("fd:", 0) == 0) {
      int fd = -1;
      auto [p, ec] = std::from_chars(peer.data() + 3, peer.data() + peer.size(), fd);
      int sndbuf = 0;
      socklen_t len = sizeof sndbuf;
      if (ec == std::errc() && p == peer.data() + peer.size() &&
          ::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0 && sndbuf > 0) {
        state_->fd = fd;
        state_->congestion_bytes = sndbuf / 2;
      }
    }
    state_->filter = filter;
    sub_ = hub_.subscribe(std::move(name), std::move(filter), 0, max_bytes);
    if (store && from_seq) {
      state_->store = store;
      state_->next_seq = from_seq;
      state_->replay_until = store->last_seq();
    }
    std::weak_ptr<State> w = state_;
    sub_->set_notify([w] {
      if (auto s = w.lock()) s->pump();
    });
    state_->sub = sub_;
    // Initial metadata now, not with the first event: the client learns the subscription
    // is live before anything happens (tests and tools wait for it).
    StartSendInitialMetadata();
    state_->pump();
  }

  void OnSendInitialMetadataDone(bool) override {}
  void OnWriteDone(bool ok) override {
    std::lock_guard lk(state_->mu);
    state_->writing = false;
    if (!ok) {
      finish_locked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    state_->pump_locked();
  }
  void OnCancel() override {
    std::lock_guard lk(state_->mu);
    finish_locked(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    sub_->set_notify(nullptr);
    hub_.unsubscribe(sub_);
    {
      std::lock_guard lk(state_->mu);
      state_->self = nullptr;
    }
    if (on_done_) on_done_();
    delete this;
  }

  // Shared with the hub's notify callback and the StallWatch, which outlive no reactor:
  // they reach it only through `self`, under `mu`.
  struct State {
    std::recursive_mutex mu;  // recursive: gRPC may run OnWriteDone inline in StartWrite
    SubscribeReactor* self = nullptr;
    grpc::CallbackServerContext* ctx = nullptr;  // valid while self is set
    std::string name;
    std::chrono::steady_clock::time_point write_since;  // when the write in flight started
    int fd = -1;                  // the connection's socket (gRPC owns it), -1: unknown
    int congestion_bytes = 0;     // unread bytes in its send queue that mean "not reading"
    bool paused = false;          // a write held back: the socket is backed up
    std::chrono::steady_clock::time_point paused_since;
    bool may_close = false;       // non-root: closed when stuck (--subscriber-stall-timeout)
    std::shared_ptr<core::Subscription> sub;
    bool writing = false;
    bool finished = false;
    v1::Event current;
    core::Subscription::Filter filter;
    core::EventStore* store = nullptr;  // replaying while set
    uint64_t next_seq = 0, replay_until = 0, replayed_max = 0;
    std::deque<v1::Event> replay;
    void pump() {
      std::lock_guard lk(mu);
      pump_locked();
    }
    // The next stored event to replay, reading the store a chunk at a time.
    std::optional<v1::Event> next_replayed() {
      while (replay.empty() && store && next_seq <= replay_until) {
        core::StoreQuery q;
        q.from_seq = next_seq;
        q.to_seq = replay_until;
        q.limit = 512;
        uint64_t rows = 0;
        auto st = store->query(q, [&](const v1::Event& ev) {
          ++rows;
          next_seq = ev.seq() + 1;
          if (!filter || filter(ev)) replay.push_back(ev);
          return true;
        });
        if (!st || rows == 0) break;
      }
      if (replay.empty()) {
        store = nullptr;  // replay done: live from here on
        return std::nullopt;
      }
      auto ev = std::move(replay.front());
      replay.pop_front();
      replayed_max = ev.seq();
      return ev;
    }
    // gRPC completes a write once it fits the client's HTTP/2 window, which the client
    // chooses (several MiB after BDP probing, up to 2 GiB if it likes), and then holds the
    // bytes until the socket takes them: a client that reads nothing could make the daemon
    // buffer that much per stream, past this stream's bounded queue. So no write starts
    // while the connection's socket is backed up (the client is not reading): events wait
    // in the bounded queue (its overflow told in-band) and the StallWatch retries.
    bool congested() {
      if (fd < 0) return false;
      int queued = 0;
      if (::ioctl(fd, SIOCOUTQ, &queued) != 0) return false;
      bool now_congested = queued > congestion_bytes;
      if (now_congested && !paused) paused_since = std::chrono::steady_clock::now();
      paused = now_congested;
      return now_congested;
    }
    void pump_locked() {
      if (!self || writing || finished) return;
      if (congested()) return;
      std::optional<v1::Event> ev;
      if (store) ev = next_replayed();
      while (!ev) {
        ev = sub->pop();
        if (!ev) return;
        if (ev->seq() && ev->seq() <= replayed_max) ev.reset();  // already replayed
      }
      current = std::move(*ev);
      writing = true;
      write_since = std::chrono::steady_clock::now();
      self->StartWrite(&current);
    }
    // A write that has not completed for `limit`: the client reads nothing (its flow-control
    // window is full), so everything queued for it is held for nothing. Cancelling ends the
    // stream (the client sees CANCELLED) and frees its share.
    // Or a write held back that long for a backed-up socket.
    bool cancel_if_stuck(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) {
      std::lock_guard lk(mu);
      if (!self || finished || !may_close || limit.count() == 0) return false;
      auto since = writing ? write_since : paused ? paused_since : now;
      if (now - since < limit) return false;
      spdlog::warn("{}: read nothing for {} s: stream closed (agentcaged --subscriber-stall-timeout)", name,
                   std::chrono::duration_cast<std::chrono::seconds>(now - since).count());
      ctx->TryCancel();
      return true;
    }
    // The StallWatch's retry of a stream held back for congestion.
    void retry() {
      std::lock_guard lk(mu);
      if (paused) pump_locked();
    }
  };

  std::shared_ptr<State> state() const { return state_; }

 private:
  void finish_locked(const grpc::Status& st) {
    if (state_->finished) return;
    state_->finished = true;
    Finish(st);
  }

  core::EventHub& hub_;
  std::shared_ptr<State> state_;
  std::shared_ptr<core::Subscription> sub_;
  std::function<void()> on_done_;
};

}  // namespace

// One thread for the daemon's Subscribe streams: every second it closes the unprivileged
// streams whose write has been stuck for the limit, and after streams ended it returns the
// freed heap to the system (glibc keeps it otherwise: 200 stuck streams that left used to
// leave the daemon at its peak size for good).
class StallWatch {
 public:
  explicit StallWatch(std::chrono::milliseconds limit) : limit_(limit), thread_([this] { run(); }) {}
  // Every stream is watched (root's too) for its congestion retries; `may_close` on the
  // state says whether it is also closed when stuck.
  ~StallWatch() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }
  void watch(std::weak_ptr<SubscribeReactor::State> s) {
    std::lock_guard lk(mu_);
    watched_.push_back(std::move(s));
  }
  void ended() { trim_wanted_ = true; }

 private:
  void run() {
    std::unique_lock lk(mu_);
    while (!stop_) {
      cv_.wait_for(lk, std::chrono::milliseconds(50));
      if (stop_) break;
      auto now = std::chrono::steady_clock::now();
      std::vector<std::shared_ptr<SubscribeReactor::State>> live;
      for (auto it = watched_.begin(); it != watched_.end();) {
        if (auto s = it->lock()) {
          live.push_back(std::move(s));
          ++it;
        } else {
          it = watched_.erase(it);
        }
      }
      lk.unlock();  // a stream's own lock is taken below; never both the other way round
      for (auto& s : live)
        if (!s->cancel_if_stuck(now, limit_)) s->retry();
      live.clear();
      lk.lock();
      // After a stream ends, trim now and every 5 s for 30 s more: gRPC frees a cancelled
      // stream's transport buffers only when its connection goes, later.
      if (trim_wanted_.exchange(false)) {
        trim_until_ = now + std::chrono::seconds(30);
        trim_next_ = std::min(trim_next_, now + std::chrono::seconds(1));  // at most one a second
      }
      if (now < trim_until_ && now >= trim_next_) {
        trim_next_ = now + std::chrono::seconds(5);
        lk.unlock();
        malloc_trim(0);
        lk.lock();
      }
    }
  }

  std::chrono::milliseconds limit_;  // 0: streams are never closed for being stuck
  std::mutex mu_;                     // guards watched_, stop_
  std::condition_variable cv_;
  std::list<std::weak_ptr<SubscribeReactor::State>> watched_;
  bool stop_ = false;
  std::atomic<bool> trim_wanted_{false};
  std::chrono::steady_clock::time_point trim_until_{}, trim_next_{};
  std::thread thread_;
};

namespace {

// Streams stored events in seq order, a chunk at a time (one store read per chunk, never
// the whole result in memory), one write in flight.
class QueryReactor : public grpc::ServerWriteReactor<v1::Event> {
 public:
  QueryReactor(core::EventStore& store, v1::EventFilter f, std::function<bool(const v1::Event&)> visible)
      : store_(store), f_(std::move(f)), visible_(std::move(visible)), next_seq_(f_.from_seq() ? f_.from_seq() : 1) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    while (buf_.empty() && !exhausted_) Fill();
    if (buf_.empty() || (f_.limit() && sent_ >= f_.limit())) return Finish(grpc::Status::OK);
    cur_ = std::move(buf_.front());
    buf_.pop_front();
    ++sent_;
    StartWrite(&cur_);
  }
  void Fill() {
    core::StoreQuery q;
    q.from_seq = next_seq_;
    q.since_ns = f_.since_ns();
    q.until_ns = f_.until_ns();
    q.violations_only = f_.violations_only();
    if (f_.sandbox_ids_size() == 1) q.sandbox_id = f_.sandbox_ids(0);
    q.limit = 512;
    uint64_t rows = 0;
    auto st = store_.query(q, [&](const v1::Event& ev) {
      ++rows;
      next_seq_ = ev.seq() + 1;
      if (filter_matches(f_, ev) && visible_(ev)) buf_.push_back(ev);
      return true;
    });
    if (!st || rows == 0) exhausted_ = true;
  }

  core::EventStore& store_;
  v1::EventFilter f_;
  std::function<bool(const v1::Event&)> visible_;
  uint64_t next_seq_;
  uint64_t sent_ = 0;
  bool exhausted_ = false;
  std::deque<v1::Event> buf_;
  v1::Event cur_;
};

class ErrorWriter : public grpc::ServerWriteReactor<v1::Event> {
 public:
  explicit ErrorWriter(const grpc::Status& st) { Finish(st); }
  void OnDone() override { delete this; }
};

}  // namespace

// Non-root callers see their own sandboxes only; host-wide events are root's.
std::function<bool(const v1::Event&)> visible_to(const core::Peer& who, core::Daemon& d) {
  return [who, &d](const v1::Event& ev) {
    if (who.root() || ev.has_loss()) return true;
    if (ev.sandbox_id().empty()) return false;
    auto owner = d.sandbox_owner(ev.sandbox_id());
    return owner && *owner == who.uid;
  };
}

grpc::ServerWriteReactor<v1::Event>* EventsService::Subscribe(grpc::CallbackServerContext* ctx,
                                                             const v1::SubscribeRequest* req) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return new ErrorWriter(st);
  if (auto bad = validate_filter(req->filter()); !bad.empty())
    return new ErrorWriter(grpc::Status(StatusCode::INVALID_ARGUMENT, bad));
  for (const auto& id : req->filter().sandbox_ids())
    if (st = may_see(*p, d_, id); !st.ok()) return new ErrorWriter(st);
  if (req->filter().from_seq() && !d_.store())
    return new ErrorWriter(grpc::Status(StatusCode::FAILED_PRECONDITION, "filter.from_seq: agentcaged runs without an audit store"));
  core::Peer who = *p;
  v1::EventFilter f = req->filter();
  auto filter = [f, vis = visible_to(who, d_)](const v1::Event& ev) { return filter_matches(f, ev) && vis(ev); };
  std::string name = "subscriber-pid" + std::to_string(who.pid);
  // An unprivileged user holds a bounded share of the daemon: so many streams, so many
  // unread bytes each (then drops, reported in-band), whatever it does not read.
  size_t max_bytes = 0;
  std::function<void()> on_done = [stall = stall_] { stall->ended(); };
  if (!who.root()) {
    const auto& o = d_.options();
    std::lock_guard lk(*subs_mu_);
    size_t& n = (*subs_per_uid_)[who.uid];
    if (n >= o.max_subscribers_per_user)
      return new ErrorWriter(grpc::Status(
          StatusCode::RESOURCE_EXHAUSTED,
          fmt::format("uid {} already holds {} live Subscribe streams (agentcaged --max-subscribers-per-user); "
                      "close one first",
                      who.uid, n)));
    ++n;
    max_bytes = o.user_subscriber_bytes;
    on_done = [mu = subs_mu_, counts = subs_per_uid_, uid = who.uid, stall = stall_] {
      {
        std::lock_guard held(*mu);
        auto it = counts->find(uid);
        if (it != counts->end() && --it->second == 0) counts->erase(it);
      }
      stall->ended();
    };
  }
  auto* r = new SubscribeReactor(ctx, d_.hub(), name, filter, d_.store(), req->filter().from_seq(), max_bytes,
                                 std::move(on_done));
  r->state()->may_close = !who.root();  // before the watch sees it
  stall_->watch(r->state());
  return r;
}

EventsService::EventsService(core::Daemon& d, PeerTable& peers)
    : d_(d), peers_(peers), stall_(std::make_shared<StallWatch>(d.options().subscriber_stall_timeout)) {}

EventsService::~EventsService() = default;

grpc::ServerWriteReactor<v1::Event>* EventsService::Query(grpc::CallbackServerContext* ctx, const v1::QueryRequest* req) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return new ErrorWriter(st);
  if (auto bad = validate_filter(req->filter()); !bad.empty())
    return new ErrorWriter(grpc::Status(StatusCode::INVALID_ARGUMENT, bad));
  for (const auto& id : req->filter().sandbox_ids())
    if (st = may_see(*p, d_, id); !st.ok()) return new ErrorWriter(st);
  if (!d_.store()) return new ErrorWriter(grpc::Status(StatusCode::FAILED_PRECONDITION, "agentcaged runs without an audit store (--no-store)"));
  return new QueryReactor(*d_.store(), req->filter(), visible_to(*p, d_));
}

grpc::ServerUnaryReactor* EventsService::ProcessTree(grpc::CallbackServerContext* ctx,
                                                     const v1::ProcessTreeRequest* req, v1::ProcessTreeResponse* resp) {
  grpc::Status st;
  auto p = caller(ctx, peers_, &st);
  if (!p) return done(ctx, st);
  if (st = may_see(*p, d_, req->sandbox_id()); !st.ok()) return done(ctx, st);
  if (!d_.store())
    return done(ctx, {StatusCode::FAILED_PRECONDITION, "the process tree is built from the audit store; agentcaged runs with --no-store"});
  // Only the process lifecycle is read, in seq order, a chunk at a time.
  core::ProcessTreeBuilder b;
  core::StoreQuery q;
  q.sandbox_id = req->sandbox_id();
  q.kinds = {"exec", "fork", "exit"};
  q.limit = 4096;
  for (uint64_t next = 1;;) {
    q.from_seq = next;
    uint64_t rows = 0;
    auto r = d_.store()->query(q, [&](const v1::Event& ev) {
      ++rows;
      next = ev.seq() + 1;
      b.add(ev);
      return true;
    });
    if (!r) return done(ctx, internal(r.error()));
    if (b.processes() > kMaxTreeProcesses)
      return done(ctx, {StatusCode::RESOURCE_EXHAUSTED,
                        "sandbox " + req->sandbox_id() + " ran more than " + std::to_string(kMaxTreeProcesses) +
                            " processes; query them with: agentcage events --sandbox " + req->sandbox_id() + " --kind exec"});
    if (rows < q.limit) break;
  }
  *resp = b.build();
  return done(ctx, grpc::Status::OK);
}

}  // namespace agentcage::grpcapi
