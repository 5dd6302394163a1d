// SPDX-License-Identifier: Apache-2.0
// Turning observed failures into violation events. Landlock, the mount view and seccomp's
// errno action do not report their denials; the monitor sees the failed system call
// (EACCES/EPERM) and this decides, from what the sandbox's confinement enforced, which
// mechanism and rule refused it. cgroup-bpf and bpf-lsm denials are reported by the
// kernel programs themselves and need no attribution.
#pragma once

#include <optional>
#include <string>

#include "agentcage/v1/event.pb.h"
#include "core/confine/confine.h"

namespace agentcage::core {

// A violation event for `ev`, or nothing when `ev` is not a denial our confinement
// explains. File failures are attributed from file events (they carry the path);
// failed-syscall events only for calls that are not file actions (those come as file
// events too); a process killed by SIGSYS from its exit event. Pure: unit-tested.
// net_reported: a network policy is installed, whose cgroup-BPF programs report their own
// denials; failed connect/sendto/bind calls are theirs, not guessed here.
std::optional<v1::Event> attribute_event(const v1::Event& ev, const ConfineDecisions& d, bool net_reported);

// The path a failed action named, as the kernel resolved it: absolute and normalised
// ("a/../b", "./x"), a relative one joined to `cwd` (the kernel's, from the record) or to
// the process's cwd or dirfd read from /proc while it lives. Returns `given` when there is
// nothing to resolve it against (the failure is then judged as spelt).
std::string attribution_path(const v1::Event& ev, const std::string& given, int dirfd, const std::string& cwd);

// `path` (absolute) with every symlink on the way followed as the kernel would, inside
// `root` ("" for the host's, or "/proc/<pid>/root"): "" when that is `path` itself, when
// `path` is relative, or when the links loop or run too long (40 links, 4096 bytes). What
// does not exist from some component on is kept as spelt, normalised.
std::string physical_path(const std::string& path, const std::string& root);

// "landlock", "mount-mask", "seccomp": the names violation events use (event.proto).
std::string mechanism_name(const std::string& confine_mechanism);

}  // namespace agentcage::core
