// SPDX-License-Identifier: Apache-2.0
// agentcaged: the host daemon. Owns the BPF programs, creates and tracks sandboxes for
// local callers (Control), and serves their events (Events) on a Unix socket.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "core/audit/audit_client.h"
#include "core/store/chain_key.h"
#include "core/sandbox/daemon.h"
#include "core/sandbox/launch.h"
#include "grpc/audit_sink.h"
#include "grpc/client.h"
#include "grpc/services.h"
#include "grpc/uds_server.h"

using namespace agentcage;

int main(int argc, char** argv) {
  CLI::App app{"agentcaged: the agentcage host daemon.\n"
               "Loads the BPF programs, creates sandboxes for local callers and serves their events\n"
               "on a Unix socket. Runs in the foreground; SIGTERM/SIGINT stop it cleanly.",
               "agentcaged"};
  core::DaemonOptions opts;
  opts.socket_path = grpcapi::kDefaultSocket;
  std::string monitor = "sandboxes";
  std::string log_level = "info";
  // Every flag can also come from an INI/TOML file (key = value, same names as the flags).
  app.set_config("--config", "", "Read options from this file (key = value, names as the flags)");
  app.add_option("--socket", opts.socket_path, "Control socket path")->capture_default_str();
  app.add_option("--monitor", monitor, "What to record: sandboxes (only sandboxed processes) or host (every process)")
      ->check(CLI::IsMember({"sandboxes", "host"}))
      ->capture_default_str();
  app.add_option("--ring-bytes", opts.monitor.ring_bytes, "Kernel ring buffer size in bytes (power of two)")
      ->check(CLI::Range(1u << 16, 1u << 30))
      ->capture_default_str();
  opts.state_dir = core::kDefaultStateDir;
  opts.monitor.pin_dir = core::kDefaultPinDir;
  app.add_option("--state-dir", opts.state_dir,
                 "Records of running sandboxes, read back after a crash or restart to re-adopt them")
      ->capture_default_str();
  app.add_option("--bpf-pin-dir", opts.monitor.pin_dir,
                 "bpffs directory for the pinned BPF programs and maps: enforcement outlives a crashed daemon")
      ->capture_default_str();
  app.add_option("--subscriber-queue", opts.subscriber_queue, "Events buffered per live subscriber before it drops")
      ->check(CLI::Range(16, 1 << 24))
      ->capture_default_str();
  app.add_option("--max-subscribers-per-user", opts.max_subscribers_per_user,
                 "Live Subscribe streams one non-root user may hold; each buffers at most 1 MiB unread")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option_function<unsigned>(
         "--subscriber-stall-timeout",
         [&](unsigned s) { opts.subscriber_stall_timeout = std::chrono::seconds(s); },
         "Close a non-root Subscribe stream that has read nothing for this many seconds (0: never) [30]")
      ->check(CLI::Range(0u, 86400u));
  app.add_option("--max-sandboxes-per-user", opts.max_sandboxes_per_user, "Running sandboxes one non-root user may hold")
      ->check(CLI::Range(1, 4000))
      ->capture_default_str();
  bool no_store = false;
  uint64_t max_bytes = 0, max_age_s = 0;
  rpc::AuditTransportOptions audit;
  bool audit_all = false;
  app.add_option("--audit-db", opts.store_path, "Audit store file (SQLite, hash-chained)")->capture_default_str();
  opts.store.chain_key_path = core::kDefaultChainKeyPath;
  app.add_option("--chain-key", opts.store.chain_key_path,
                 "Key for the store's hash chain (HMAC-SHA256), created root-only on first start")
      ->capture_default_str();
  opts.store.witness_dir = core::kDefaultStoreWitnessDir;
  app.add_option("--store-witness-dir", opts.store.witness_dir,
                 "Where it also remembers which store lives at --audit-db, outside the store's directory, so a "
                 "store removed with its directory is told in the new store's first record (empty: not kept)")
      ->capture_default_str();
  app.add_flag("--no-store", no_store, "Keep no audit store (live subscribers only; nothing to stream)");
  app.add_option("--audit-max-bytes", max_bytes, "Store retention: size limit in bytes (0: none)");
  app.add_option("--store-sandbox-budget", opts.store_sandbox_budget,
                 "Store bytes one sandbox's events may take before its file and failed-syscall events are "
                 "counted (store_budget Loss) instead of stored; violations, execs, exits and network are "
                 "always stored (0: no budget)")
      ->capture_default_str();
  app.add_option("--audit-max-age", max_age_s, "Store retention: age limit in seconds (0: none)");
  app.add_option("--audit-endpoint", audit.endpoint, "Stream violations to this audit collector (HOST:PORT)");
  app.add_flag("--audit-insecure", audit.insecure, "Plaintext to the collector, no TLS (trusted networks only)");
  app.add_option("--audit-ca", audit.ca_file, "PEM CA certificates for the collector (default: system roots)");
  app.add_option("--audit-cert", audit.cert_file, "PEM client certificate (mTLS)");
  app.add_option("--audit-key", audit.key_file, "PEM client key (mTLS)");
  app.add_option("--audit-server-name", audit.server_name, "Name expected in the collector's certificate");
  app.add_flag("--audit-all", audit_all, "Stream every event, not only violations and losses");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  auto logger = spdlog::stderr_color_mt("agentcaged");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e agentcaged %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  opts.host_mode = monitor == "host";
  if (no_store) opts.store_path.clear();
  opts.store.max_bytes = max_bytes;
  opts.store.create_chain_key = true;  // the install-time key: a fresh node keys its chain from seq 1
  opts.store.check_pages = true;       // a damaged page is found at start, not by the query that meets it
  opts.store.max_age = std::chrono::seconds(max_age_s);
  if (no_store && !audit.endpoint.empty()) {
    fprintf(stderr, "agentcaged: error: --audit-endpoint streams from the store: drop --no-store\n");
    return 2;
  }
  if (opts.monitor.ring_bytes & (opts.monitor.ring_bytes - 1)) {
    fprintf(stderr, "agentcaged: --ring-bytes: %u is not a power of two\n", opts.monitor.ring_bytes);
    return 2;
  }
  if (geteuid() != 0) {
    fprintf(stderr, "agentcaged: error: must run as root (loads BPF programs, creates cgroups)\n");
    return 1;
  }

  // Signals are handled by sigwait on this thread only: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // splice(2) cannot take MSG_NOSIGNAL: a peer gone mid-splice must be an EPIPE, not death.
  signal(SIGPIPE, SIG_IGN);
  // Descriptors: every sandbox's resolver and name check hold some (a checked connection
  // holds 6); the soft limit systemd and shells give (1024) is far below what they may
  // need together. Up to the hard limit, which root may raise.
  if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    rlimit want{std::max<rlim_t>(nofile.rlim_max, 65536), std::max<rlim_t>(nofile.rlim_max, 65536)};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
      nofile.rlim_cur = nofile.rlim_max;
      (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
  }

  core::Daemon daemon(opts);
  grpcapi::PeerTable* peers = nullptr;
  std::unique_ptr<grpcapi::UdsServer> server;
  std::unique_ptr<grpcapi::ControlService> control;
  std::unique_ptr<grpcapi::EventsService> events;
  // The services need the server's peer table, and the server needs the services: the
  // table lives in a holder created first.
  auto holder = std::make_unique<grpcapi::PeerTable>();
  peers = holder.get();
  daemon.add_step(
      "control socket",
      [&]() -> core::Status {
        control = std::make_unique<grpcapi::ControlService>(daemon, *peers);
        events = std::make_unique<grpcapi::EventsService>(daemon, *peers);
        auto s = grpcapi::UdsServer::start(opts.socket_path, {control.get(), events.get()}, peers,
                                           [&](core::UniqueFd conn, const core::Peer& peer) {
                                             core::serve_launch(daemon.registry(), std::move(conn), peer);
                                           });
        if (!s) return std::unexpected(s.error());
        server = std::move(*s);
        return {};
      },
      [&] {
        if (server) server->shutdown();
        server.reset();
      });

  // The remote audit stream tails the store (the spool): at-least-once, resumed from the
  // collector's acknowledged sequence number after an outage or a restart.
  std::unique_ptr<core::AuditClient> client;
  if (!audit.endpoint.empty())
    daemon.add_step(
        "audit stream",
        [&]() -> core::Status {
          auto conn = rpc::make_audit_connector(audit);
          if (!conn) return std::unexpected(conn.error());
          core::AuditClientOptions co;
          co.all_events = audit_all;
          client = std::make_unique<core::AuditClient>(*daemon.store(), std::move(*conn), co);
          client->start();
          // While the store refuses events the collector hears of it at once, not when
          // (if ever) the store recovers.
          daemon.set_unstored_listener([c = client.get()](const v1::Event& loss, const std::vector<v1::Event>& evs) {
            c->tell_unstored(loss, evs);
          });
          // `agentcage status` shows how far the stream got and what it could not tell.
          daemon.set_extra_counters([c = client.get()] {
            auto s = c->stats();
            return std::vector<std::pair<std::string, uint64_t>>{{"audit.connected", s.connected ? 1 : 0},
                                                                 {"audit.acked_seq", s.acked_seq},
                                                                 {"audit.shipped_through", s.shipped_through},
                                                                 {"audit.anchored_seq", s.anchored_seq},
                                                                 {"audit.sent_events", s.sent_events},
                                                                 {"audit.sessions", s.sessions},
                                                                 {"audit.unstored.sent", s.unstored_sent},
                                                                 {"audit.unstored.dropped", s.unstored_dropped}};
          });
          return {};
        },
        [&] {
          daemon.set_unstored_listener({});
          daemon.set_extra_counters({});
          if (client) client->stop();
          client.reset();
        });

  if (auto st = daemon.start(); !st) {
    fprintf(stderr, "agentcaged: error: %s\n", st.error().message().c_str());
    return 1;
  }
  spdlog::info("ready: monitor={} socket={}", monitor, opts.socket_path);
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: profiles are read per sandbox at creation; nothing to reload");
      continue;
    }
    spdlog::info("signal {}: shutting down", sig);
    break;
  }
  daemon.stop();
  return 0;
}
