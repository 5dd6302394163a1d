// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <time.h>

#include <cstdint>

namespace agentcage::core {

// Wall-clock time, ns since the epoch (CLOCK_REALTIME): the time_ns of every event and
// record the daemon, the pipeline and the store write. Kernel records carry boot time
// and are converted by the decoder; this is for what user space itself reports.
inline uint64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace agentcage::core
