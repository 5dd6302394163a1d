// SPDX-License-Identifier: Apache-2.0
// agentcaged: the host daemon. This build records host-wide (--monitor host), prints
// events, keeps them in the audit store (--audit-db) and streams them to an audit
// collector (--audit-endpoint); the gRPC control plane builds on it.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "core/audit_client.h"
#include "core/decoder.h"
#include "core/session.h"
#include "core/store.h"
#include "core/store_writer.h"
#include "grpc/audit_sink.h"

int main(int argc, char** argv) {
  CLI::App app{"agentcaged: the agentcage host daemon (records every process on the host)", "agentcaged"};
  std::string monitor = "host";
  std::string format = "json";
  app.add_option("--monitor", monitor, "What to record: host (every process)")->check(CLI::IsMember({"host"}));
  app.add_option("-o,--format", format, "Event format: json or text")->check(CLI::IsMember({"json", "text"}));
  std::string audit_db = agentcage::core::kDefaultStorePath;
  bool no_store = false;
  agentcage::rpc::AuditTransportOptions audit;
  bool audit_all = false;
  uint64_t max_bytes = 0, max_age_s = 0;
  app.add_option("--audit-db", audit_db, "Audit store file (SQLite, hash-chained)")->capture_default_str();
  app.add_flag("--no-store", no_store, "Do not keep events in the audit store (and stream nothing)");
  app.add_option("--audit-max-bytes", max_bytes, "Store retention: size limit in bytes (0: none)");
  app.add_option("--audit-max-age", max_age_s, "Store retention: age limit in seconds (0: none)");
  app.add_option("--audit-endpoint", audit.endpoint, "Stream violations to this audit collector (HOST:PORT)");
  app.add_flag("--audit-insecure", audit.insecure, "Plaintext to the collector, no TLS (trusted networks only)");
  app.add_option("--audit-ca", audit.ca_file, "PEM CA certificates for the collector (default: system roots)");
  app.add_option("--audit-cert", audit.cert_file, "PEM client certificate (mTLS)");
  app.add_option("--audit-key", audit.key_file, "PEM client key (mTLS)");
  app.add_option("--audit-server-name", audit.server_name, "Name expected in the collector's certificate");
  app.add_flag("--audit-all", audit_all, "Stream every event, not only violations and losses");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  // Threads started below (store writer, audit client, gRPC) must not take SIGINT/SIGTERM:
  // run_session waits for them with sigwait in this thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (no_store && !audit.endpoint.empty()) {
    fprintf(stderr, "agentcaged: error: --audit-endpoint streams from the store: drop --no-store\n");
    return 2;
  }
  std::unique_ptr<agentcage::core::EventStore> store;
  std::unique_ptr<agentcage::core::StoreWriter> writer;
  std::unique_ptr<agentcage::core::AuditClient> client;
  if (!no_store) {
    agentcage::core::StoreOptions sto;
    sto.max_bytes = max_bytes;
    sto.max_age = std::chrono::seconds(max_age_s);
    auto s = agentcage::core::EventStore::open(audit_db, sto);
    if (!s) {
      fprintf(stderr, "agentcaged: error: %s\n", s.error().message().c_str());
      return 1;
    }
    store = std::move(*s);
    writer = std::make_unique<agentcage::core::StoreWriter>(*store);
    if (!audit.endpoint.empty()) {
      auto conn = agentcage::rpc::make_audit_connector(audit);
      if (!conn) {
        fprintf(stderr, "agentcaged: error: %s\n", conn.error().message().c_str());
        return 1;
      }
      agentcage::core::AuditClientOptions co;
      co.all_events = audit_all;
      client = std::make_unique<agentcage::core::AuditClient>(*store, std::move(*conn), co);
      client->start();
    }
  }
  agentcage::core::SessionOptions so;
  so.monitor = true;
  so.monitor_opts.host_mode = true;
  so.on_event = [&](const agentcage::v1::Event& ev) {
    if (writer) writer->submit(ev);  // never blocks the reader; a full queue becomes a Loss event
    auto line = format == "json" ? agentcage::core::to_json_line(ev) : agentcage::core::to_text_line(ev);
    puts(line.c_str());
    fflush(stdout);
  };
  auto r = agentcage::core::run_session(so);
  // Teardown in reverse: store what is queued, then let the client ship it briefly.
  if (writer) writer->stop();
  if (client) client->stop();
  if (!r) {
    fprintf(stderr, "agentcaged: error: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
