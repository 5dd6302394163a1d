// SPDX-License-Identifier: Apache-2.0
// Kernel records (bpf/include/agentcage/abi.h) -> agentcage.v1.Event. Every length and
// size is checked: a truncated or malformed record is an error value, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "agentcage/v1/event.pb.h"
#include "core/base/result.h"

namespace agentcage::core {

struct DecodeContext {
  std::string node;         // host name stamped on events
  std::string boot_id;      // /proc/sys/kernel/random/boot_id, part of every exec_id
  int64_t boot_to_real_ns;  // CLOCK_REALTIME - CLOCK_BOOTTIME, for wall-clock stamps
  // Names BPF LSM inode rules by the id the kernel echoes (ac_inode_rule.rule_id), e.g.
  // "deny-path /secret". Unset: "inode rule N".
  std::function<std::string(uint32_t rule_id)> lsm_rule_name;

  // Reads the host's boot id, host name and clock offset.
  static DecodeContext for_this_host();
};

// "<boot id prefix>:<start time in clock ticks>:<pid>". Clock ticks (USER_HZ) are the
// unit /proc/<pid>/stat uses, so processes found in /proc and processes seen by the
// kernel programs get the same id.
std::string make_exec_id(const std::string& boot_id, uint32_t pid, uint64_t start_boottime_ns);

// Sandbox keys are random 64-bit values; their text form is 16 hex digits.
std::string sandbox_id_string(uint64_t key);

// "EACCES" for 13; empty for 0.
std::string errno_name(int err);
// The x86_64 name of syscall nr ("openat"), or "syscall_<nr>".
std::string syscall_name(uint32_t nr);

// The fields reset_event() clears: must equal v1::Event's field count (unit-tested), so a
// field added to event.proto is not left stale across reused records.
inline constexpr int kEventFields = 17;  // + sandbox, dns (never decoded: reset clears them as any other kind)
// Clears ev for reuse, keeping sub-messages and string capacity when the next record is
// of kind `next`.
void reset_event(v1::Event& ev, v1::Event::KindCase next);
// enum ac_file_op -> FileOp.op ("open"), "unknown" when out of range.
const char* file_op_name(uint32_t op);

Result<v1::Event> decode_record(std::span<const std::byte> rec, const DecodeContext& ctx);
// The same into an existing message (cleared first): a reader that reuses one Event keeps
// its string and repeated-field capacity instead of allocating per record.
Status decode_record_into(std::span<const std::byte> rec, const DecodeContext& ctx, v1::Event& out);

// "10.0.0.1:443", "[2001:db8::1]:53", "/run/x.sock", "::ffff:10.0.0.1:80" (v4-mapped).
std::string sockaddr_text(const v1::SockAddr& a);
// "connect 127.0.0.1:9/tcp", "connect /run/x.sock/unix-stream", "socket raw".
std::string net_what(const v1::NetOp& n);

// One JSON object per line, snake_case field names as in the .proto.
std::string to_json_line(const v1::Event& ev);
// A compact human line ("12:00:01.123456 exec 1234 /bin/echo hi").
std::string to_text_line(const v1::Event& ev);

}  // namespace agentcage::core
