// SPDX-License-Identifier: Apache-2.0
// `agentcage profile generate`: the least-privilege profile a recorded run needed. The run
// is a learning run (`mode: audit` over a base profile): each `audit: would deny` report is
// exactly one thing the base lacks. The generated profile extends that base and grants
// those, folded into directories where that cannot reach a path the base denies, each
// commented with the first report that needed it. Pure: events in, YAML out.
#pragma once
#include <string>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "agentcage/v1/profile.pb.h"
#include "core/base/result.h"

namespace agentcage::core {

struct GenerateOptions {
  std::string name;       // the new profile's name
  std::string extends;    // the base it extends (name or path, as written into `extends:`)
  std::string workspace;  // the run's workspace: paths inside it are written as ${WORKSPACE}/...
  std::string source;     // where the events came from, for the header comment
};

struct GeneratedProfile {
  std::string yaml;
  size_t reports = 0;                 // audit reports read
  size_t grants = 0;                  // entries written
  std::vector<std::string> skipped;   // reports not turned into a grant, and why
};

// `base` is the resolved base profile (variables expanded): its deny and deny_write
// entries are never granted, and no folded directory may contain one.
GeneratedProfile generate_profile(const GenerateOptions& o, const v1::Profile& base,
                                  const std::vector<v1::Event>& events);

}  // namespace agentcage::core
