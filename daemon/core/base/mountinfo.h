// SPDX-License-Identifier: Apache-2.0
// Where the cgroup hierarchies are mounted, and cgroup ids: read by the monitor, the
// decoder and the confinement alike, so they live below all of them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/result.h"

namespace agentcage::core {

// Mount point of the cgroup2 hierarchy in a /proc/<pid>/mountinfo text. Pure: unit-tested.
// Here (hybrid cgroups) it is /sys/fs/cgroup/unified, on unified-only hosts /sys/fs/cgroup.
Result<std::string> find_cgroup2_mount(std::string_view mountinfo);

// Mount point of a cgroup v1 hierarchy carrying `controller` (e.g. "pids"), or an error.
Result<std::string> find_cgroup1_mount(std::string_view mountinfo, std::string_view controller);

// find_cgroup2_mount() over this process's /proc/self/mountinfo.
Result<std::string> cgroup2_mount();
// The cgroup v2 id of a directory (via name_to_handle_at, as the kernel reports it to BPF).
Result<uint64_t> cgroup_id_of(const std::string& path);

}  // namespace agentcage::core
