// SPDX-License-Identifier: Apache-2.0
// agentcage: the CLI.
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <mutex>
#include <thread>

#include "cli.h"
#include "core/audit_client.h"
#include "core/decoder.h"
#include "core/session.h"
#include "core/store.h"
#include "grpc/audit_sink.h"

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

int do_run(const cli::RunArgs& a) {
  if (!a.profile.empty()) {
    fprintf(stderr, "agentcage: error: --profile: profiles are not enforced by this build yet\n");
    return 2;
  }
  core::SessionOptions so;
  so.argv = a.command;
  auto r = core::run_session(so);
  if (!r) return fail(r.error());
  return r->exit_status;
}

int do_trace(const cli::TraceArgs& a) {
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
  so.monitor = true;
  so.monitor_opts.host_mode = a.host;
  so.monitor_opts.ring_bytes = a.ring_bytes;
  so.on_event = [&](const v1::Event& ev) {
    std::string line = a.format == cli::OutputFormat::json ? core::to_json_line(ev) : core::to_text_line(ev);
    std::lock_guard lk(mu);
    fputs(line.c_str(), out);
    fputc('\n', out);
    fflush(out);
  };
  auto r = core::run_session(so);
  if (out != stdout) fclose(out);
  if (!r) return fail(r.error());
  if (r->lost) fprintf(stderr, "agentcage: warning: %lu events lost (kernel ring buffer full)\n", r->lost);
  return r->exit_status;
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

int do_audit_verify(const cli::AuditVerifyArgs& a) {
  core::StoreOptions so;
  so.read_only = true;
  auto store = core::EventStore::open(a.db, so);
  if (!store) {
    fprintf(stderr, "agentcage: error: %s\n", store.error().message().c_str());
    return 2;
  }
  auto rep = (*store)->verify();
  if (!rep) {
    fprintf(stderr, "agentcage: error: %s\n", rep.error().message().c_str());
    return 2;
  }
  if (!rep->ok) {
    printf("BROKEN at seq %lu: %s\n", rep->first_bad_seq, rep->what.c_str());
    return 1;
  }
  if (rep->checkpoint_seq)
    printf("OK: %lu events, chain intact (seq %lu..%lu; retention removed seq 1..%lu)\n", rep->checked,
           rep->first_seq, rep->last_seq, rep->checkpoint_seq);
  else
    printf("OK: %lu events, chain intact\n", rep->checked);
  return 0;
}

int do_audit_push(const cli::AuditPushArgs& a) {
  auto set = block_stop_signals();
  auto store = core::EventStore::open(a.db, {});
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
  auto store = core::EventStore::open(a.db, so);
  if (!store) return fail(store.error());
  rpc::CollectorServerOptions o;
  o.listen = a.listen;
  o.insecure = a.insecure;
  o.tls_cert = a.tls_cert;
  o.tls_key = a.tls_key;
  o.tls_client_ca = a.tls_client_ca;
  auto server = rpc::CollectorServer::start(**store, o);
  if (!server) return fail(server.error());
  // The port line goes to stdout and is flushed: tests and scripts read the chosen port.
  auto colon = a.listen.rfind(':');
  printf("agentcage collector: listening on %s:%d (%s), store %s\n", a.listen.substr(0, colon).c_str(),
         (*server)->port(), a.insecure ? "plaintext" : a.tls_client_ca.empty() ? "tls" : "mtls", a.db.c_str());
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  (*server)->shutdown();
  auto st = (*server)->stats();
  printf("agentcage collector: stopped: %lu batches, %lu events stored, %lu duplicates dropped\n", st.batches,
         st.inserted, st.duplicates);
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
  if (auto* v = std::get_if<cli::AuditVerifyArgs>(&parsed)) return do_audit_verify(*v);
  if (auto* p = std::get_if<cli::AuditPushArgs>(&parsed)) return do_audit_push(*p);
  if (auto* c = std::get_if<cli::CollectorArgs>(&parsed)) return do_collector(*c);
  return do_trace(std::get<cli::TraceArgs>(parsed));
}
