// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/record_failure.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "core/confine/cgroup.h"

namespace agentcage::core {

v1::Profile::RecordFailure record_failure_action(const v1::Profile* profile) {
  return profile && profile->on_record_failure() != v1::Profile::RECORD_FAILURE_UNSPECIFIED
             ? profile->on_record_failure()
             : v1::Profile::RECORD_FAILURE_CONTINUE;
}

Error record_failure_refusal(const v1::Profile& profile, const std::string& why) {
  return Error{0,
               fmt::format("the audit store cannot record ({}), and profile '{}' says on_record_failure: {}", why,
                           profile.name(),
                           record_failure_action(&profile) == v1::Profile::RECORD_FAILURE_PAUSE ? "pause" : "stop"),
               "free space for the store (see agentcage status, or the store's file system) and try again"};
}

bool apply_record_failure(v1::Profile::RecordFailure action, const std::string& id, const std::string& cgroup_path,
                          bool failing, bool frozen, const std::string& why) {
  if (action == v1::Profile::RECORD_FAILURE_CONTINUE || action == v1::Profile::RECORD_FAILURE_UNSPECIFIED) return frozen;
  if (action == v1::Profile::RECORD_FAILURE_STOP) {
    if (!failing) return frozen;
    spdlog::warn("sandbox {}: the audit store cannot record ({}): stopped (on_record_failure: stop)", id, why);
    if (auto r = kill_cgroup(cgroup_path); !r) spdlog::error("sandbox {}: stop: {}", id, r.error().message());
    return frozen;
  }
  if (frozen == failing) return frozen;
  // cgroup v2 freezer: every task in the subtree stops where it is and resumes later.
  std::string f = cgroup_path + "/cgroup.freeze";
  int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, failing ? "1" : "0", 1) == 1;
  int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) {
    spdlog::error("sandbox {}: {} {}: {}{}", id, failing ? "freeze" : "thaw", f, std::strerror(err),
                  failing ? "; stopping it instead" : "");
    if (failing) (void)kill_cgroup(cgroup_path);
    return frozen;
  }
  spdlog::warn("sandbox {}: {} (on_record_failure: pause)", id,
               failing ? "paused: the audit store cannot record (" + why + ")" : "resumed: the audit store records again");
  return failing;
}

}  // namespace agentcage::core
