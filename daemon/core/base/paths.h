// SPDX-License-Identifier: Apache-2.0
// The installed locations, one constant each: the daemon, the CLI defaults and --help
// all read these, so they cannot drift apart.
#pragma once

namespace agentcage::core {

inline constexpr const char* kRunDir = "/run/agentcage";                          // sockets, scratch
inline constexpr const char* kDefaultSocket = "/run/agentcage/agentcage.sock";    // agentcaged's control socket
inline constexpr const char* kDefaultStorePath = "/var/lib/agentcage/audit.db";   // the node's audit store
inline constexpr const char* kDefaultCollectorStorePath = "/var/lib/agentcage/collector.db";
// Which store lives at each store path (StoreOptions::witness_dir): beside the chain key,
// not under /var/lib/agentcage, so removing that directory whole is told in the new
// store's first record rather than taken for a first install.
inline constexpr const char* kDefaultStoreWitnessDir = "/etc/agentcage/stores";
// Records of running sandboxes (tmpfs: a reboot ends every sandbox, and these with them).
inline constexpr const char* kDefaultStateDir = "/run/agentcage/state";
// agentcaged's pinned BPF programs, links and maps (bpffs: also gone at reboot).
inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/agentcage";

}  // namespace agentcage::core
