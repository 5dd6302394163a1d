// SPDX-License-Identifier: Apache-2.0
// Command-line parsing for `agentcage`, apart from execution so it is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace agentcage::cli {

enum class OutputFormat { json, text };

// agentcage run [--profile P] [--workspace DIR] -- CMD ARGS...
struct RunArgs {
  std::vector<std::string> command;
  std::string profile;
  std::string workspace;
};

// agentcage trace [-o json|text] [--output FILE] [--host] [--ring-bytes N] [-- CMD ARGS...]
struct TraceArgs {
  std::vector<std::string> command;
  OutputFormat format = OutputFormat::json;
  std::string output = "-";
  bool host = false;
  uint32_t ring_bytes = 16u << 20;
};

// agentcage profile lint [--workspace DIR] FILE...
struct ProfileLintArgs {
  std::vector<std::string> files;
  std::string workspace;
};

// agentcage profile show [--workspace DIR] NAME
struct ProfileShowArgs {
  std::string name;  // a profile name on the search path, or a path to a .yaml file
  std::string workspace;
};

// What the parser decided: run a command, or exit now printing `text`
// (help: status 0 on stdout; usage errors: status 2 on stderr).
struct Exit {
  int status = 0;
  std::string text;
};

using Parsed = std::variant<RunArgs, TraceArgs, ProfileLintArgs, ProfileShowArgs, Exit>;

Parsed parse(const std::vector<std::string>& args);  // args excludes argv[0]

}  // namespace agentcage::cli
