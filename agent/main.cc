// SPDX-License-Identifier: Apache-2.0
// agentcage: the CLI.
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include "cli.h"
#include "core/decoder.h"
#include "core/profile.h"
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
    // Validate first, so a bad profile fails with file:line:col even before enforcement exists.
    auto p = core::resolve_profile(a.profile, core::ProfileVars::from_environment(a.workspace));
    if (!p) return fail(p.error());
    for (const auto& w : p->warnings) fprintf(stderr, "%s\n", w.str().c_str());
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

int do_profile_lint(const cli::ProfileLintArgs& a) {
  // Linting checks a file, not a run: a neutral workspace keeps the result independent of
  // the directory lint happens to be run from.
  auto vars = core::ProfileVars::from_environment(a.workspace.empty() ? "/WORKSPACE" : a.workspace);
  int status = 0;
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
  if (auto* l = std::get_if<cli::ProfileLintArgs>(&parsed)) return do_profile_lint(*l);
  if (auto* s = std::get_if<cli::ProfileShowArgs>(&parsed)) return do_profile_show(*s);
  return do_trace(std::get<cli::TraceArgs>(parsed));
}
