// SPDX-License-Identifier: Apache-2.0
// Command-line parsing for `agentcage`, apart from execution so it is unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/net_policy.h"

namespace agentcage::cli {

enum class OutputFormat { json, text };

// agentcage run [--profile P] [--workspace DIR] [network options] -- CMD ARGS...
// Network options (run and trace): --allow-net RULE (repeatable), --allow-unix NAME
// (repeatable), --net-default deny|kill|audit. Any of them switches the policy on.
struct RunArgs {
  std::vector<std::string> command;
  std::string profile;
  std::string workspace;
  std::optional<core::NetPolicy> net;  // set when a network option was given
};

// agentcage trace [-o json|text] [--output FILE] [--host] [--ring-bytes N] [-- CMD ARGS...]
struct TraceArgs {
  std::vector<std::string> command;
  OutputFormat format = OutputFormat::json;
  std::string output = "-";
  bool host = false;
  uint32_t ring_bytes = 16u << 20;
  std::optional<core::NetPolicy> net;  // set when a network option was given
};

// What the parser decided: run a command, or exit now printing `text`
// (help: status 0 on stdout; usage errors: status 2 on stderr).
struct Exit {
  int status = 0;
  std::string text;
};

using Parsed = std::variant<RunArgs, TraceArgs, Exit>;

Parsed parse(const std::vector<std::string>& args);  // args excludes argv[0]

}  // namespace agentcage::cli
