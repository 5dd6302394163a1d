// SPDX-License-Identifier: Apache-2.0
// agentcaged: the host daemon. This build records host-wide (--monitor host) and prints
// events; the gRPC control plane, the audit store and the audit stream build on it.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/decoder.h"
#include "core/session.h"

int main(int argc, char** argv) {
  CLI::App app{"agentcaged: the agentcage host daemon (records every process on the host)", "agentcaged"};
  std::string monitor = "host";
  std::string format = "json";
  app.add_option("--monitor", monitor, "What to record: host (every process)")->check(CLI::IsMember({"host"}));
  app.add_option("-o,--format", format, "Event format: json or text")->check(CLI::IsMember({"json", "text"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  agentcage::core::SessionOptions so;
  so.monitor = true;
  so.monitor_opts.host_mode = true;
  so.on_event = [&](const agentcage::v1::Event& ev) {
    auto line = format == "json" ? agentcage::core::to_json_line(ev) : agentcage::core::to_text_line(ev);
    puts(line.c_str());
    fflush(stdout);
  };
  auto r = agentcage::core::run_session(so);
  if (!r) {
    fprintf(stderr, "agentcaged: error: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
