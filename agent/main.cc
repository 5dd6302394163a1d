// SPDX-License-Identifier: Apache-2.0
// agentcage: the CLI.
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fmt/format.h>
#include <mutex>

#include "cli.h"
#include "core/decoder.h"
#include "core/event_json.h"
#include "core/session.h"

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
  // Lines are buffered and flushed once per reader batch (at most every 50 ms), not per
  // event: a write() per event cost more than decoding it.
  static char outbuf[1 << 16];
  setvbuf(out, outbuf, _IOFBF, sizeof outbuf);
  std::string buf;  // reused: no allocation per event once it has grown
  so.on_event = [&](const v1::Event& ev) {
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
  if (!r) return fail(r.error());
  if (r->lost) fprintf(stderr, "agentcage: warning: %lu events lost (kernel ring buffer full)\n", r->lost);
  // Every kernel-side degradation is reported, not only losses: truncated strings and
  // failed reads mean a field in some event is incomplete (flagged in that event too).
  const auto& ks = r->kernel_stats;
  bool degraded = r->decode_errors != 0 || r->prog_misses != 0;
  for (int i = 0; i < AC_STAT_MAX; ++i) degraded |= i != AC_STAT_EVENTS && ks[static_cast<size_t>(i)] != 0;
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
  return do_trace(std::get<cli::TraceArgs>(parsed));
}
