// SPDX-License-Identifier: Apache-2.0
// The user-space half of the reader, isolated from the kernel and the machine's load:
// decode a synthetic file record, stamp it from the process table, format it as a JSON
// line; ns per record over many records. Run: build/tests/bench/reader_bench [N]
#include <agentcage/abi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/events/decoder.h"
#include "core/events/event_json.h"
#include "core/events/process_table.h"

using namespace agentcage;

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 1'000'000;
  core::DecodeContext ctx{"node1", "0123456789abcdef", 0};
  core::ProcessTable table(ctx.boot_id);
  core::ProcessInfo p;
  p.pid = 4242;
  p.exec_id = core::make_exec_id(ctx.boot_id, 4242, 5'000'000'000);
  p.parent_exec_id = "0123456789abcdef:1:1";
  p.binary = "/tmp/agentcage-bench/gen_files";
  p.argv = {"/tmp/agentcage-bench/gen_files", "200000", "/tmp/agentcage-bench/file"};
  p.cwd = "/work";
  table.upsert(p);

  ac_file_event r{};
  r.hdr.type = AC_EV_FILE;
  r.hdr.abi_version = AC_ABI_VERSION;
  r.hdr.size = sizeof r;
  r.hdr.pid = r.hdr.tid = 4242;
  r.hdr.ppid = 1;
  r.hdr.start_ns = 5'000'000'000;
  r.hdr.sandbox_id = 0xabcdef;
  r.hdr.cgroup_id = 747;
  r.hdr.flags = AC_F_PATH_RESOLVED;
  r.op = AC_FOP_OPEN;
  r.nr = 257;
  r.result = 3;
  r.dirfd = -100;
  std::strcpy(r.path, "/tmp/agentcage-bench/file");
  r.path_len = static_cast<uint32_t>(std::strlen(r.path) + 1);
  std::span<const std::byte> rec(reinterpret_cast<const std::byte*>(&r), sizeof r);

  v1::Event ev;
  std::string out;
  size_t bytes = 0;
  double t[3] = {};
  for (int stage = 0; stage < 3; ++stage) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
      r.hdr.ktime_ns = static_cast<uint64_t>(i);
      if (!core::decode_record_into(rec, ctx, ev)) return 1;
      if (stage >= 1) table.apply(ev);
      if (stage >= 2) {
        out.clear();
        core::append_event_json(ev, out);
        bytes += out.size();
      }
    }
    t[stage] = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / n;
  }
  printf("per record: decode %.0f ns, + process table %.0f ns, + JSON %.0f ns (%zu bytes/line)\n", t[0], t[1], t[2],
         bytes / static_cast<size_t>(n));
  return 0;
}
