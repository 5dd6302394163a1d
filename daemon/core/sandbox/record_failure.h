// SPDX-License-Identifier: Apache-2.0
// A profile's on_record_failure (continue | pause | stop), applied the same way to a
// daemon sandbox and to an in-process run: while the audit store cannot record, `pause`
// freezes the sandbox's cgroup (cgroup v2 freezer) until it records again, `stop` kills
// it, and a new sandbox of such a profile is refused.
#pragma once

#include <string>

#include "agentcage/v1/profile.pb.h"
#include "core/base/result.h"

namespace agentcage::core {

// The profile's setting; no profile or unspecified: continue.
v1::Profile::RecordFailure record_failure_action(const v1::Profile* profile);

// The refusal of a new sandbox of `profile` while the store cannot record (`why`: the
// store's reason, e.g. store_full).
Error record_failure_refusal(const v1::Profile& profile, const std::string& why);

// One turn of the store (failing or recording again) for one sandbox: freezes, thaws or
// kills the cgroup at `cgroup_path` as `action` says, logs it, and returns whether the
// sandbox is frozen now (`frozen`: before). A freeze that fails stops the sandbox
// instead: fail closed.
bool apply_record_failure(v1::Profile::RecordFailure action, const std::string& sandbox_id,
                          const std::string& cgroup_path, bool failing, bool frozen, const std::string& why);

}  // namespace agentcage::core
