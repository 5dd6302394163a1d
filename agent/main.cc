// SPDX-License-Identifier: Apache-2.0
// agentcage: the CLI.
#include <fcntl.h>

#include <filesystem>
#include <fnmatch.h>
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fmt/format.h>
#include <mutex>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "agentcage/v1/control.grpc.pb.h"
#include "cli.h"
#include "core/audit/audit_client.h"
#include "core/base/fs.h"
#include "core/base/unique_fd.h"
#include "core/base/text.h"
#include "core/events/decoder.h"
#include "core/confine/launcher.h"
#include "core/policy/profile.h"
#include "core/sandbox/sandbox_policy.h"
#include "core/events/event_json.h"
#include "core/sandbox/sandbox_registry.h"
#include "core/sandbox/record_failure.h"
#include "core/sandbox/session.h"
#include "core/sandbox/launch.h"
#include "grpc/client.h"
#include "core/store/store.h"
#include "core/store/store_writer.h"
#include "grpc/audit_sink.h"
#include "offline.h"
#include "violation_relay.h"

namespace {

using namespace agentcage;

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("agentcage");
  logger->set_pattern("agentcage: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  if (const char* lvl = getenv("AGENTCAGE_LOG")) spdlog::set_level(spdlog::level::from_str(lvl));
}

int fail(const core::Error& e) {
  fprintf(stderr, "agentcage: error: %s\n", e.message().c_str());
  return 1;
}

// A run whose command did not start: the error, and the status a shell would return
// (127: no such command, 126: not executable; 1 for agentcage's own failures).
int fail_run(const core::Error& e) {
  fail(e);
  return core::exec_failure_status(e).value_or(1);
}

// One JSON convention for every message: argv and paths are `bytes` and read as text.
std::string to_json(const google::protobuf::Message& m) { return core::message_json(m); }

// `run` through agentcaged. With a profile the daemon starts the command itself
// (CreateSandboxRequest.launch) with the profile's whole confinement, as our uid: we hand
// it our stdio and --pass-fd descriptors on the launch socket, then relay signals and
// wait for the exit status over that connection, which the sandbox's init holds (so a
// daemon restart does not interrupt the run, and our death ends it). Without a profile
// (network options at most) we start the command and the daemon places it in the
// sandbox, whose network policy it installs. Root and other users alike.
int close_sandbox(v1::Control::Stub& stub, const std::string& id, int status) {
  v1::CloseSandboxRequest c;
  c.set_sandbox_id(id);
  c.set_exit_status(status);
  v1::CloseSandboxResponse cr;
  grpc::ClientContext ctx;
  if (auto st = stub.CloseSandbox(&ctx, c, &cr); !st.ok()) fail(grpcapi::rpc_error("CloseSandbox", st));
  return status;
}

const char* line_reset();

int run_via_daemon(const cli::RunArgs& a, std::shared_ptr<grpc::Channel> ch,
                   const std::optional<core::SandboxPolicy>& policy = std::nullopt) {
  auto stub = v1::Control::NewStub(ch);
  v1::CreateSandboxRequest req;
  req.set_profile(a.profile);
  // The daemon resolves the profile for us: it needs the workspace absolute.
  req.set_workspace(policy ? core::ProfileVars::from_environment(a.workspace).workspace : a.workspace);
  if (policy) {
    if (auto ok = core::check_command_allowed(policy->confine, a.command[0], &policy->env.env); !ok) return fail(ok.error());
    auto* l = req.mutable_launch();
    for (char** e = environ; *e; ++e) l->add_env(*e);
    for (const auto& n : a.pass_env) l->add_pass_env(n);
    for (int fd : a.pass_fds) l->add_pass_fds(fd);
  }
  for (const auto& s : a.command) req.add_argv(s);
  // The network options travel in the request: the daemon enforces them exactly as the
  // in-process path does (cgroup-BPF), or refuses the sandbox. With a profile, only the
  // names --allow-domain adds to it.
  if (a.net) *req.mutable_network() = core::network_options(core::net_flags_of(*a.net));
  for (const auto& d : a.allow_domains) req.mutable_network()->add_allow_domain(d);
  v1::Sandbox sb;
  {
    grpc::ClientContext ctx;
    auto st = stub->CreateSandbox(&ctx, req, &sb);
    if (!st.ok()) return fail(grpcapi::rpc_error("CreateSandbox", st));
  }
  spdlog::debug("sandbox {} ({})", sb.id(), sb.cgroup_path());
  std::mutex mu;
  cli::ViolationRelay relay(ch, sb.id(), [&](const v1::Event& ev) {
    std::lock_guard lk(mu);
    fprintf(stderr, "%sagentcage: %s: %s\n", line_reset(), ev.has_violation() ? "violation" : "loss",
            core::to_text_line(ev).c_str());
  });
  if (policy) {
    int status = 1;
    auto conn = core::send_launch(a.socket, sb.id(), a.pass_fds);
    if (!conn) {
      fail(conn.error());
    } else if (auto r = core::supervise_launch(conn->get(), &status); !r) {
      fail(r.error());  // status says how it ended all the same (127/126, 137, 1)
    }
    close_sandbox(*stub, sb.id(), status);
    relay.finish(std::chrono::seconds(2));
    return status;
  }
  // The forwarded signals were blocked by do_run before any gRPC thread existed.
  core::SpawnOptions so;
  so.argv = a.command;
  so.keep_fds = a.pass_fds;
  so.place = [&](pid_t pid) -> core::Status {
    v1::PlaceProcessRequest p;
    p.set_sandbox_id(sb.id());
    p.set_pid(static_cast<uint32_t>(pid));
    v1::PlaceProcessResponse r;
    grpc::ClientContext ctx;
    auto st = stub->PlaceProcess(&ctx, p, &r);
    if (!st.ok()) return std::unexpected(grpcapi::rpc_error("PlaceProcess", st));
    return {};
  };
  int status = 1;
  auto child = core::spawn(so);
  if (!child) {
    status = fail_run(child.error());
  } else {
    auto w = core::wait_forwarding_signals(*child);
    if (!w) fail(w.error());
    else status = *w;
  }
  close_sandbox(*stub, sb.id(), status);
  relay.finish(std::chrono::seconds(2));
  return status;
}

// --deny-path/--deny-exec as session rules.
std::vector<core::DenyRule> deny_rules(const std::vector<std::string>& paths, const std::vector<std::string>& execs) {
  std::vector<core::DenyRule> out;
  for (const auto& p : paths) out.push_back({p, AC_LSM_DENY_OPEN | AC_LSM_DENY_EXEC});
  for (const auto& p : execs) out.push_back({p, AC_LSM_DENY_EXEC});
  return out;
}

// What agentcage tells the operator must not be concealed by terminal state the agent
// left behind: hidden or same-colour text (SGR 8, 30 on 40), a hidden cursor, or the
// alternate screen, whose contents vanish when it is left. Only when stderr is a
// terminal. A relayed line resets the character attributes (the agent's TUI keeps its
// screen); the end-of-run summary also leaves the alternate screen, so it stays on the
// operator's main screen after the agent is gone. The event text itself is escaped
// (escape_text), so a file name cannot carry sequences of its own.
const char* line_reset() { return ::isatty(STDERR_FILENO) ? "\033[0m" : ""; }
const char* final_reset() { return ::isatty(STDERR_FILENO) ? "\033[?1049l\033[0m\033[?25h\r" : ""; }

// "3 violations: landlock 1, seccomp 2", or empty when there were none.
std::string violation_summary(const std::map<std::string, uint64_t>& by_mechanism) {
  uint64_t total = 0;
  std::string parts;
  for (const auto& [m, n] : by_mechanism) {
    total += n;
    parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", m, n);
  }
  if (!total) return {};
  return fmt::format("{} violation{}: {}", total, total == 1 ? "" : "s", parts);
}

// --profile (run and trace): resolve, lint warnings to stderr, compile onto the
// enforcement layers (the command's environment from ours and --pass-env included; what
// it keeps out is named on stderr). Returns the exit status to use on failure in *status.
std::optional<core::SandboxPolicy> load_policy(const std::string& profile, const std::string& workspace,
                                               const std::vector<std::string>& allow_domains,
                                               const std::vector<std::string>& pass_env, int* status,
                                               v1::Profile* resolved = nullptr) {
  *status = 0;
  if (profile.empty()) return std::nullopt;
  auto vars = core::ProfileVars::from_environment(workspace);
  auto p = core::resolve_profile(profile, vars);
  if (!p) {
    *status = fail(p.error());
    return std::nullopt;
  }
  for (const auto& w : p->warnings) fprintf(stderr, "%s\n", w.str().c_str());
  // The same amendment agentcaged makes on its path (services.cc): part of the record.
  if (auto st = core::add_allowed_domains(p->profile, allow_domains, "--allow-domain"); !st) {
    *status = fail(st.error());
    return std::nullopt;
  }
  if (resolved) *resolved = p->profile;
  core::PolicyContext ctx;
  ctx.env = core::current_environment();
  ctx.pass_env = pass_env;
  auto c = core::compile_profile(p->profile, ctx);
  if (!c) {
    *status = fail(c.error());
    return std::nullopt;
  }
  for (const auto& n : c->notes) spdlog::info("profile {}: {}", c->profile, n);
  if (auto line = core::env_plan_summary(c->env); !line.empty()) spdlog::info("profile {}: {}", c->profile, line);
  return std::move(*c);
}

// The record of an in-process run's sandbox (agentcaged's SandboxChange, without a daemon).
v1::Sandbox inprocess_sandbox(const std::string& id, const cli::RunArgs& a) {
  v1::Sandbox sb;
  sb.set_id(id);
  sb.set_owner_uid(getuid());
  sb.set_owner_pid(static_cast<uint32_t>(getpid()));
  sb.set_profile(a.profile);
  std::string ws = a.workspace;
  if (ws.empty()) {
    char buf[4096];
    if (getcwd(buf, sizeof buf)) ws = buf;
  }
  sb.set_workspace(a.profile.empty() ? "" : ws);  // a workspace means something only to a profile
  for (const auto& arg : a.command) sb.add_argv(arg);
  sb.set_created_ns(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
  sb.set_state("running");
  return sb;
}

v1::Event sandbox_record(const v1::Sandbox& sb, const std::string& phase, const std::vector<std::string>& prov,
                         const std::string& reason) {
  v1::Event ev;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) ev.set_node(host);
  ev.set_sandbox_id(sb.id());
  ev.mutable_process()->set_pid(sb.owner_pid());
  ev.mutable_process()->set_uid(sb.owner_uid());
  auto* c = ev.mutable_sandbox();
  c->set_phase(phase);
  *c->mutable_sandbox() = sb;
  for (const auto& p : prov) c->add_provenance(p);
  c->set_reason(reason);
  if (phase == "closed")
    c->set_ended_ns(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()));
  return ev;
}

int do_run(const cli::RunArgs& a) {
  // Before any thread exists (gRPC's, the store writer, the event reader): a forwarded
  // signal must reach wait_forwarding_signals(), not kill the launcher from another
  // thread and leave the agent running (or, through the daemon, SIGKILLed unwarned).
  core::block_forwarded_signals();
  int st = 0;
  v1::Profile resolved;
  std::optional<core::SandboxPolicy> policy =
      load_policy(a.profile, a.workspace, a.allow_domains, a.pass_env, &st, &resolved);
  if (st) return st;
  bool deny = !a.deny_paths.empty() || !a.deny_execs.empty();
  // Through agentcaged whenever it listens, root included: one engine, and ps, events,
  // the audit stream see every run. Deny rules (BPF LSM) are root's, in-process.
  bool embedded = a.no_daemon || (deny && geteuid() == 0);
  if (!embedded && grpcapi::daemon_listening(a.socket)) {
    if (deny) {
      fprintf(stderr,
              "agentcage: error: --deny-path/--deny-exec are not supported through agentcaged yet\n"
              "hint: run as root (in-process), or use a profile's filesystem.deny\n");
      return 2;
    }
    auto ch = grpcapi::connect_daemon(a.socket);
    if (!ch) return fail(ch.error());
    return run_via_daemon(a, *ch, policy);
  }
  if (geteuid() != 0) {
    fprintf(stderr,
            "agentcage: error: no agentcaged listening on %s, and running without it needs root\n"
            "hint: start the daemon (agentcaged) or run as root\n",
            a.socket.c_str());
    return 1;
  }
  core::SessionOptions so;
  so.argv = a.command;
  so.pass_fds = a.pass_fds;
  so.net_policy = a.net;
  so.lsm_deny = deny_rules(a.deny_paths, a.deny_execs);
  if (policy) {
    so.confine = policy->confine;
    so.net_policy = policy->net;
    so.env = policy->env.env;
    so.git_review = policy->git_review;
    so.exec_kill = policy->exec_kill;
    so.git_review_uid = policy->confine.uid.value_or(getuid());
    // The monitor attributes Landlock/mount/seccomp denials and records the run.
    so.monitor = true;
  }
  // Embedded mode records into the same tamper-evident store agentcaged keeps, so a run
  // without the daemon is on record too (`agentcage audit verify`, the audit stream).
  std::unique_ptr<core::EventStore> store;
  // on_record_failure, as agentcaged applies it to its sandboxes: while this run's store
  // cannot record, the profile's `pause` freezes the run's cgroup until it records again
  // and `stop` kills it (turns seen on the writer thread; the cgroup arrives via
  // on_cgroup before the command starts).
  struct RecordFailure {
    std::mutex mu;
    v1::Profile::RecordFailure action = v1::Profile::RECORD_FAILURE_CONTINUE;
    std::string id, cgroup, why;
    bool failing = false, frozen = false;
    void turn(bool now_failing, const std::string& reason) {
      std::lock_guard lk(mu);
      if (failing == now_failing) return;
      failing = now_failing;
      why = reason;
      if (!cgroup.empty()) frozen = core::apply_record_failure(action, id, cgroup, failing, frozen, why);
    }
    void set_cgroup(const std::string& path) {
      std::lock_guard lk(mu);
      cgroup = path;
      if (failing) frozen = core::apply_record_failure(action, id, cgroup, true, frozen, why);
    }
  } recfail;
  recfail.action = core::record_failure_action(policy ? &resolved : nullptr);
  std::unique_ptr<core::StoreWriter> writer;
  if (!a.no_store) {
    core::StoreOptions sto;
    // Root's runs key the chain as agentcaged does (and create the key on a fresh
    // install); an unprivileged user's own store cannot read the root-only key: unkeyed.
    sto.chain_key_path = core::kDefaultChainKeyPath;
    sto.create_chain_key = geteuid() == 0;
    // Root's runs also keep agentcaged's witness of which store lives at this path; an
    // unprivileged user's store has only the identity file beside it.
    if (geteuid() == 0) sto.witness_dir = core::kDefaultStoreWitnessDir;
    auto opened = core::EventStore::open(a.audit_db, sto);
    if (!opened) return fail(opened.error());
    store = std::move(*opened);
    so.monitor = true;
    so.monitor_optional = !policy;
  }
  // Violations and any loss of events go to stderr.
  std::mutex mu;
  if (store) {
    writer = std::make_unique<core::StoreWriter>(
        *store, 65536, 4096, [&](const std::vector<v1::Event>&) { recfail.turn(false, ""); },
        [&](const v1::Event& loss, const std::vector<v1::Event>&) {
          {
            std::lock_guard lk(mu);
            fprintf(stderr, "%sagentcage: loss: %s\n", line_reset(), core::to_text_line(loss).c_str());
          }
          recfail.turn(true, loss.loss().reason());
        });
  }
  so.on_event = [&](const v1::Event& ev) {
    if (writer) writer->submit(ev);  // never blocks the reader: a full queue is a Loss record
    if (!ev.has_violation() && !ev.has_loss()) return;
    std::lock_guard lk(mu);
    fprintf(stderr, "%sagentcage: %s: %s\n", line_reset(), ev.has_violation() ? "violation" : "loss",
            core::to_text_line(ev).c_str());
  };
  // The in-process run is on record as a sandbox too, as agentcaged records its own:
  // created before anything runs, closed with what was in force and how it ended.
  v1::Sandbox sb;
  if (writer) {
    so.sandbox_key = core::new_sandbox_key();
    sb = inprocess_sandbox(core::sandbox_id_string(so.sandbox_key), a);
    auto created = sandbox_record(sb, "created", {}, "");
    if (policy) core::set_resolved_profile(*created.mutable_sandbox(), resolved);
    writer->submit(std::move(created));
    recfail.id = sb.id();
    if (recfail.action != v1::Profile::RECORD_FAILURE_CONTINUE) {
      // Work that must not run unrecorded does not start when the store already refuses.
      writer->flush();
      if (auto ws = writer->stats(); !ws.failing_reason.empty()) {
        writer->stop();
        return fail(core::record_failure_refusal(resolved, ws.failing_reason));
      }
      so.on_cgroup = [&](const std::string& path) { recfail.set_cgroup(path); };
    }
  }
  auto r = core::run_session(so);
  if (writer) {
    sb.set_state("closed");
    std::vector<std::string> prov;
    if (r)
      for (const auto& p : r->enforcement)
        prov.push_back(fmt::format("{}: {}{}", p.mechanism, p.detail, p.enforced ? "" : " (not enforced)"));
    auto rec = sandbox_record(sb, "closed", prov, r ? "in-process run" : "in-process run failed: " + r.error().context);
    if (policy) core::set_resolved_profile(*rec.mutable_sandbox(), resolved);
    if (r) {
      auto* c = rec.mutable_sandbox();
      c->set_exit_known(true);
      c->set_exit_status(r->exit_status);
      c->set_lost(r->lost);
      for (int i = 0; i < AC_STAT_MAX; ++i)
        if (r->kernel_stats[static_cast<size_t>(i)]) (*c->mutable_kernel_counters())[core::stat_name(i)] = r->kernel_stats[static_cast<size_t>(i)];
    }
    writer->submit(std::move(rec));
    writer->stop();  // stores what is queued
  }
  if (!r) return fail_run(r.error());
  if (auto sum = violation_summary(r->violations); !sum.empty())
    fprintf(stderr, "%sagentcage: %s\n", final_reset(), sum.c_str());
  if (store) spdlog::debug("sandbox {} recorded in {} (up to seq {})", r->sandbox_id, store->path(), store->last_seq());
  return r->exit_status;
}

int do_trace(const cli::TraceArgs& a) {
  core::block_forwarded_signals();  // before any thread, as in do_run
  FILE* out = stdout;
  if (a.output != "-") {
    out = fopen(a.output.c_str(), "we");
    if (!out) {
      fprintf(stderr, "agentcage: error: --output %s: %s\n", a.output.c_str(), strerror(errno));
      return 1;
    }
  }
  std::mutex mu;
  core::SessionOptions so;
  so.argv = a.command;
  so.pass_fds = a.pass_fds;
  so.monitor = true;
  so.monitor_opts.host_mode = a.host;
  so.monitor_opts.ring_bytes = a.ring_bytes;
  so.net_policy = a.net;
  so.lsm_deny = deny_rules(a.deny_paths, a.deny_execs);
  int pst = 0;
  auto policy = load_policy(a.profile, a.workspace, a.allow_domains, a.pass_env, &pst);
  if (pst) return pst;
  if (policy) {
    so.confine = policy->confine;
    so.net_policy = policy->net;
    so.env = policy->env.env;
    so.git_review = policy->git_review;
    so.exec_kill = policy->exec_kill;
    so.git_review_uid = policy->confine.uid.value_or(getuid());
  }
  // Lines are buffered and flushed once per reader batch (at most every 50 ms), not per
  // event: a write() per event cost more than decoding it.
  static char outbuf[1 << 16];
  setvbuf(out, outbuf, _IOFBF, sizeof outbuf);
  std::string buf;  // reused: no allocation per event once it has grown
  // The same filters as `events`; a violation or a loss is never hidden by --exclude.
  auto printed = [&](const v1::Event& ev) {
    if (ev.has_loss()) return true;
    if (a.violations_only && !ev.has_violation()) return false;
    if (!a.kinds.empty() && std::find(a.kinds.begin(), a.kinds.end(), core::event_kind(ev)) == a.kinds.end()) return false;
    if (ev.has_violation() || a.excludes.empty()) return true;
    const std::string& path = ev.has_file() ? ev.file().path() : ev.has_exec() ? ev.exec().filename() : std::string();
    if (path.empty()) return true;
    for (const auto& g : a.excludes)
      if (::fnmatch(g.c_str(), path.c_str(), 0) == 0) return false;
    return true;
  };
  so.on_event = [&](const v1::Event& ev) {
    if (!printed(ev)) return;
    std::lock_guard lk(mu);
    buf.clear();
    if (a.format == cli::OutputFormat::json)
      core::append_event_json(ev, buf);
    else
      buf = core::to_text_line(ev);
    buf += '\n';
    fwrite(buf.data(), 1, buf.size(), out);
  };
  so.on_batch = [&] {
    std::lock_guard lk(mu);
    fflush(out);
  };
  auto r = core::run_session(so);
  fflush(out);
  if (out != stdout) fclose(out);
  if (!r) return fail_run(r.error());
  if (r->lost)
    fprintf(stderr, "agentcage: warning: %lu events lost (kernel ring buffer full, or its reserve for process "
            "records kept)\n", r->lost);
  if (auto sum = violation_summary(r->violations); !sum.empty())
    fprintf(stderr, "%sagentcage: %s\n", final_reset(), sum.c_str());
  // Every kernel-side degradation is reported, not only losses: truncated strings and
  // failed reads mean a field in some event is incomplete (flagged in that event too).
  const auto& ks = r->kernel_stats;
  bool degraded = r->decode_errors != 0 || r->prog_misses != 0;
  for (int i : {AC_STAT_RINGBUF_FULL, AC_STAT_SHED, AC_STAT_TRUNCATED, AC_STAT_READ_FAULT, AC_STAT_TASK_MAP_FULL,
                AC_STAT_NET_KILL_FAILED, AC_STAT_EXEC_KILL_FAILED})
    degraded |= ks[static_cast<size_t>(i)] != 0;
  if (degraded) {
    std::string line = "agentcage: kernel counters:";
    for (int i = 0; i < AC_STAT_MAX; ++i) line += fmt::format(" {}={}", core::stat_name(i), ks[static_cast<size_t>(i)]);
    if (r->decode_errors) line += fmt::format(" decode_errors={}", r->decode_errors);
    // Skipped program runs (another BPF program was running on the CPU): an upper bound
    // on records that could not even be attempted.
    if (r->prog_misses) line += fmt::format(" prog_recursion_misses={}", r->prog_misses);
    fprintf(stderr, "%s\n", line.c_str());
  }
  return r->exit_status;
}

int do_ps(const cli::PsArgs& a) {
  auto ch = grpcapi::connect_daemon(a.socket);
  if (!ch) return fail(ch.error());
  auto stub = v1::Control::NewStub(*ch);
  v1::ListSandboxesRequest req;
  req.set_all(a.all);
  req.set_limit(a.limit);
  v1::ListSandboxesResponse resp;
  grpc::ClientContext ctx;
  if (auto st = stub->ListSandboxes(&ctx, req, &resp); !st.ok()) return fail(grpcapi::rpc_error("ListSandboxes", st));
  // On stderr: a script reading the list on stdout is not handed a line that is no sandbox.
  if (resp.truncated())
    fprintf(stderr, "agentcage: %d of %u sandboxes listed, newest first (--limit, or the daemon's 3 MiB reply bound)\n",
            resp.sandboxes_size(), resp.total());
  if (a.format == cli::OutputFormat::json) {
    for (const auto& s : resp.sandboxes()) printf("%s\n", to_json(s).c_str());
    return 0;
  }
  printf("%-16s  %-7s  %5s  %5s  %-14s  %s\n", "SANDBOX", "STATE", "UID", "PIDS", "PROFILE", "COMMAND");
  for (const auto& s : resp.sandboxes()) {
    std::string cmd;
    for (const auto& x : s.argv()) cmd += (cmd.empty() ? "" : " ") + x;
    printf("%-16s  %-7s  %5u  %5d  %-14s  %s\n", s.id().c_str(), s.state().c_str(), s.owner_uid(), s.pids_size(),
           s.profile().empty() ? "-" : s.profile().c_str(), core::escape_text(cmd).c_str());
  }
  return 0;
}

int do_status(const cli::StatusArgs& a) {
  auto ch = grpcapi::connect_daemon(a.socket);
  if (!ch) return fail(ch.error());
  auto stub = v1::Control::NewStub(*ch);
  v1::StatusResponse resp;
  grpc::ClientContext ctx;
  if (auto st = stub->Status(&ctx, v1::StatusRequest(), &resp); !st.ok()) return fail(grpcapi::rpc_error("Status", st));
  // A daemon that runs but cannot record is not healthy: a monitoring probe or a script
  // reading only the exit status must see it (the output says what fails).
  const int health = resp.store_state().empty() || resp.store_state() == "ok" ? 0 : 2;
  if (a.format == cli::OutputFormat::json) {
    printf("%s\n", to_json(resp).c_str());
    return health;
  }
  printf("agentcaged %s on %s, up %.1fs, monitor: %s, sandboxes: %u, subscribers: %u\n", resp.version().c_str(),
         resp.node().c_str(), static_cast<double>(resp.uptime_ns()) / 1e9, resp.host_mode() ? "host" : "sandboxes",
         resp.sandboxes(), resp.subscribers());
  if (!resp.store_state().empty()) printf("store: %s\n", core::escape_text(resp.store_state()).c_str());
  if (!resp.store_origin().empty()) printf("store origin: %s\n", core::escape_text(resp.store_origin()).c_str());
  printf("enforcement:\n");
  for (const auto& e : resp.enforcement())
    printf("  %-28s %-40s %s%s%s\n", e.concern().c_str(), e.mechanism().c_str(), e.available() ? "yes" : "NO",
           e.note().empty() ? "" : "  ", e.note().c_str());
  printf("counters:\n");
  for (const auto& c : resp.counters()) printf("  %-36s %lu\n", c.name().c_str(), c.value());
  if (health) fprintf(stderr, "agentcage: degraded: the audit store is failing (see store: above)\n");
  return health;
}

void print_event(const cli::EventsArgs& a, const v1::Event& ev) {
  auto line = a.format == cli::OutputFormat::json ? core::to_json_line(ev) : core::to_text_line(ev);
  fputs(line.c_str(), stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

int do_events(const cli::EventsArgs& a) {
  v1::EventFilter f;
  for (const auto& s : a.sandboxes) f.add_sandbox_ids(s);
  for (const auto& k : a.kinds) f.add_kinds(k);
  f.set_violations_only(a.violations);
  f.set_from_seq(a.from_seq);
  f.set_limit(a.limit);
  if (!a.db.empty()) {  // offline: the store file, read as the daemon's Query would
    auto store = cli::open_store_file(a.db);
    if (!store) return fail(store.error());
    auto st = cli::query_store(**store, f, [&](const v1::Event& ev) {
      print_event(a, ev);
      return true;
    });
    return st ? 0 : fail(st.error());
  }
  auto ch = grpcapi::connect_daemon(a.socket);
  if (!ch) return fail(ch.error());
  auto stub = v1::Events::NewStub(*ch);
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader;
  if (a.follow) {
    v1::SubscribeRequest req;
    *req.mutable_filter() = f;
    reader = stub->Subscribe(&ctx, req);
  } else {
    v1::QueryRequest req;
    *req.mutable_filter() = f;
    reader = stub->Query(&ctx, req);
  }
  v1::Event ev;
  while (reader->Read(&ev)) print_event(a, ev);
  auto st = reader->Finish();
  if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED)
    return fail(grpcapi::rpc_error(a.follow ? "Subscribe" : "Query", st));
  return 0;
}

int do_profile_lint(const cli::ProfileLintArgs& a) {
  // Linting checks a file, not a run: a neutral workspace keeps the result independent of
  // the directory lint happens to be run from.
  auto vars = core::ProfileVars::from_environment(a.workspace.empty() ? "/WORKSPACE" : a.workspace);
  int status = 0;
  // Directories a name would be looked up in that this user's runs will skip.
  for (const auto& d : core::profile_search_path()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(d, ec)) continue;
    if (auto why = core::untrusted_profile_path(d, vars.uid); !why.empty())
      fprintf(stderr, "%s: warning: profiles here are skipped by name for uid %u: %s\n", d.c_str(), vars.uid,
              why.c_str());
  }
  for (const auto& file : a.files) {
    // A bare name would be looked up on the search path; lint reads exactly the file given.
    std::string path = core::is_profile_path(file) ? file : "./" + file;
    auto r = core::resolve_profile(path, vars);
    if (!r) {
      fprintf(stderr, "%s\n", r.error().message().c_str());
      printf("%s: invalid\n", file.c_str());
      fflush(stdout);
      status = 1;
      continue;
    }
    for (const auto& w : r->warnings) fprintf(stderr, "%s\n", w.str().c_str());
    if (r->warnings.empty())
      printf("%s: ok\n", file.c_str());
    else
      printf("%s: ok (%zu warning%s)\n", file.c_str(), r->warnings.size(), r->warnings.size() == 1 ? "" : "s");
    fflush(stdout);  // keep "FILE: ok" in order with the diagnostics on stderr
  }
  fflush(stdout);
  return status;
}

int do_profile_show(const cli::ProfileShowArgs& a) {
  auto vars = core::ProfileVars::from_environment(a.workspace);
  auto r = core::resolve_profile(a.name, vars);
  if (!r) return fail(r.error());
  for (const auto& w : r->warnings) fprintf(stderr, "%s\n", w.str().c_str());
  std::vector<std::string> header{"agentcage profile '" + r->profile.name() + "', fully resolved", "from:"};
  for (const auto& f : r->chain) header.push_back("  " + f);
  header.push_back("with WORKSPACE=" + vars.workspace + " HOME=" + vars.home + " USER=" + vars.user +
                   " TMPDIR=" + vars.tmpdir);
  fputs(core::to_yaml(r->profile, header).c_str(), stdout);
  return 0;
}

// Blocks SIGINT/SIGTERM in every thread started after this (gRPC's included) and returns
// the set, for sigwait in the main thread: a clean, ordered shutdown.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

std::string this_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "unknown";
  return buf;
}

// The anchors `verify` checks against: the collector's checkpoints, or a checkpoint file.
core::Result<std::vector<v1::Checkpoint>> verify_anchors(const cli::AuditVerifyArgs& a) {
  if (!a.checkpoint_file.empty()) {
    auto text = core::read_input_file(a.checkpoint_file, 1 << 20);
    if (!text) return std::unexpected(text.error());
    v1::Checkpoint cp;
    if (auto st = google::protobuf::util::JsonStringToMessage(*text, &cp); !st.ok())
      return core::error(fmt::format("checkpoint file {}: {}", a.checkpoint_file, std::string(st.message())),
                         "pass a file written by 'agentcage audit checkpoint'");
    return std::vector<v1::Checkpoint>{cp};
  }
  rpc::AuditTransportOptions to{a.against, a.insecure, a.ca, a.cert, a.key, a.server_name};
  // Every store of the node: a replaced store shows as one the collector never saw.
  return rpc::fetch_checkpoints(to, a.node.empty() ? this_host() : a.node, "");
}

int do_audit_verify(const cli::AuditVerifyArgs& a) {
  core::StoreOptions so;
  so.read_only = true;
  so.chain_key_path = a.chain_key;
  auto store = core::EventStore::open(a.db, so);
  if (!store) {
    fprintf(stderr, "agentcage: error: %s\n", store.error().message().c_str());
    return 2;
  }
  std::optional<std::vector<v1::Checkpoint>> anchors;
  if (!a.against.empty() || !a.checkpoint_file.empty()) {
    auto got = verify_anchors(a);
    if (!got) {
      fprintf(stderr, "agentcage: error: %s\n", got.error().message().c_str());
      return 2;
    }
    anchors = std::move(*got);
  }
  auto rep = (*store)->verify(anchors ? &*anchors : nullptr);
  if (!rep) {
    fprintf(stderr, "agentcage: error: %s\n", rep.error().message().c_str());
    return 2;
  }
  for (const auto& n : rep->notes) fprintf(stderr, "agentcage: note: %s\n", n.c_str());
  if (!rep->ok) {
    printf("%s at seq %lu: %s\n", rep->unverifiable ? "UNVERIFIED" : "BROKEN", rep->first_bad_seq, rep->what.c_str());
    return rep->unverifiable ? 2 : 1;
  }
  std::string range = rep->checkpoint_seq ? fmt::format(" (seq {}..{}; retention removed seq 1..{})", rep->first_seq,
                                                        rep->last_seq, rep->checkpoint_seq)
                                          : "";
  printf("OK: %lu events, chain intact%s, %s\n", rep->checked, range.c_str(), rep->chain.c_str());
  if (anchors)
    printf("anchored: %lu checkpoint(s) match, the newest at seq %lu%s\n", rep->anchors_checked, rep->anchored_seq,
           rep->anchored_seq < rep->last_seq
               ? fmt::format("; seq {}..{} are not anchored yet", rep->anchored_seq + 1, rep->last_seq).c_str()
               : "");
  // The head, to be notarised anywhere: a later verify that ends elsewhere shows a rewrite.
  printf("head: seq %lu hash %s store %s\n", rep->last_seq, rep->head_hash.c_str(), (*store)->store_id().c_str());
  return 0;
}

int do_audit_checkpoint(const cli::AuditCheckpointArgs& a) {
  core::StoreOptions so;
  so.read_only = true;
  so.chain_key_path = a.chain_key;
  auto store = core::EventStore::open(a.db, so);
  if (!store) return fail(store.error());
  auto cp = (*store)->signed_head(a.node.empty() ? this_host() : a.node);
  if (!cp) return fail(cp.error());
  std::string json;
  google::protobuf::util::JsonPrintOptions jo;
  jo.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(*cp, &json, jo);
  if (a.output == "-") {
    fputs(json.c_str(), stdout);
    return 0;
  }
  core::UniqueFd fd(::open(a.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd || ::write(fd.get(), json.data(), json.size()) != static_cast<ssize_t>(json.size()))
    return fail(core::sys_error("write checkpoint " + a.output).error());
  fprintf(stderr, "agentcage: checkpoint of %s at seq %lu written to %s\n", a.db.c_str(), cp->seq(), a.output.c_str());
  return 0;
}

int do_audit_keygen(const cli::AuditKeygenArgs& a) {
  auto ring = core::create_chain_key(a.chain_key, a.rotate);
  if (!ring) return fail(ring.error());
  printf("chain key %s: key id %s%s\n", a.chain_key.c_str(), ring->current().id.c_str(),
         a.rotate ? fmt::format(" (generation {}; restart agentcaged to use it)", ring->keys.size()).c_str() : "");
  return 0;
}

int do_audit_push(const cli::AuditPushArgs& a) {
  auto set = block_stop_signals();
  core::StoreOptions so;
  so.chain_key_path = a.chain_key;  // signs the checkpoints it sends
  auto store = core::EventStore::open(a.db, so);
  if (!store) return fail(store.error());
  rpc::AuditTransportOptions to{a.endpoint, a.insecure, a.ca, a.cert, a.key, a.server_name};
  auto conn = rpc::make_audit_connector(to);
  if (!conn) return fail(conn.error());
  core::AuditClientOptions co;
  co.node = a.node;
  co.all_events = a.all;
  co.max_batch_events = a.batch;
  core::AuditClient client(**store, std::move(*conn), co);
  int rc = 0;
  if (a.once) {
    // SIGINT/SIGTERM still end a --once push: a watcher thread turns them into stop().
    std::thread watcher([&] {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig != 0) client.stop();
    });
    auto r = client.run_until_caught_up(std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout_s));
    pthread_kill(watcher.native_handle(), SIGTERM);
    watcher.join();
    if (!r) rc = fail(r.error());
  } else {
    client.start();
    int sig = 0;
    sigwait(&set, &sig);
    client.stop();
  }
  auto st = client.stats();
  printf("pushed to %s: acknowledged through seq %lu (%lu events sent in %lu batches, %lu sessions)\n",
         a.endpoint.c_str(), st.shipped_through, st.sent_events, st.batches, st.sessions);
  return rc;
}

int do_collector(const cli::CollectorArgs& a) {
  auto set = block_stop_signals();
  core::StoreOptions so;
  so.collector = true;
  so.check_pages = true;  // long-lived, as agentcaged: a damaged page is found at start
  // The collector's own chain is keyed with its host's key, as a node's is.
  so.chain_key_path = a.chain_key;
  // Root creates the install-time key; another user only a key file of their own choosing.
  so.create_chain_key = geteuid() == 0 || a.chain_key != core::kDefaultChainKeyPath;
  auto store = core::EventStore::open(a.db, so);
  if (!store) return fail(store.error());
  rpc::CollectorServerOptions o;
  o.listen = a.listen;
  o.insecure = a.insecure;
  o.tls_cert = a.tls_cert;
  o.tls_key = a.tls_key;
  o.tls_client_ca = a.tls_client_ca;
  o.accept_any_node = a.accept_any_node;
  auto server = rpc::CollectorServer::start(**store, o);
  if (!server) return fail(server.error());
  // The port line goes to stdout and is flushed: tests and scripts read the chosen port.
  auto colon = a.listen.rfind(':');
  printf("agentcage collector: listening on %s:%d (%s%s), store %s\n", a.listen.substr(0, colon).c_str(),
         (*server)->port(), a.insecure ? "plaintext" : a.tls_client_ca.empty() ? "tls" : "mtls",
         a.accept_any_node ? ", any node: unauthenticated" : "", a.db.c_str());
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  (*server)->shutdown();
  auto st = (*server)->stats();
  printf("agentcage collector: stopped: %lu batches, %lu events stored, %lu duplicates dropped, %lu conflicts\n",
         st.batches, st.inserted, st.duplicates, st.conflicts);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = cli::parse(args);
  if (auto* e = std::get_if<cli::Exit>(&parsed)) {
    fprintf(e->status == 0 ? stdout : stderr, "%s\n", e->text.c_str());
    return e->status;
  }
  if (auto* r = std::get_if<cli::RunArgs>(&parsed)) return do_run(*r);
  if (auto* p = std::get_if<cli::PsArgs>(&parsed)) return do_ps(*p);
  if (auto* t = std::get_if<cli::TreeArgs>(&parsed)) return cli::run_tree(*t);
  if (auto* r = std::get_if<cli::AuditReportArgs>(&parsed)) return cli::run_report(*r);
  if (auto* s = std::get_if<cli::StatusArgs>(&parsed)) return do_status(*s);
  if (auto* e = std::get_if<cli::EventsArgs>(&parsed)) return do_events(*e);
  if (auto* l = std::get_if<cli::ProfileLintArgs>(&parsed)) return do_profile_lint(*l);
  if (auto* s = std::get_if<cli::ProfileShowArgs>(&parsed)) return do_profile_show(*s);
  if (auto* g = std::get_if<cli::ProfileGenerateArgs>(&parsed)) return cli::run_profile_generate(*g);
  if (auto* v = std::get_if<cli::AuditVerifyArgs>(&parsed)) return do_audit_verify(*v);
  if (auto* c = std::get_if<cli::AuditCheckpointArgs>(&parsed)) return do_audit_checkpoint(*c);
  if (auto* k = std::get_if<cli::AuditKeygenArgs>(&parsed)) return do_audit_keygen(*k);
  if (auto* p = std::get_if<cli::AuditPushArgs>(&parsed)) return do_audit_push(*p);
  if (auto* c = std::get_if<cli::CollectorArgs>(&parsed)) return do_collector(*c);
  return do_trace(std::get<cli::TraceArgs>(parsed));
}
