// SPDX-License-Identifier: Apache-2.0
#include "core/bpf_monitor.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "agentcage_bpf.skel.h"

namespace agentcage::core {
namespace {

// RAII over bpftool's C++ skeleton members (open/load/attach/destroy).
template <class T>
struct SkeletonDeleter {
  void operator()(T* s) const { T::destroy(s); }
};
template <class T>
using BpfSkeleton = std::unique_ptr<T, SkeletonDeleter<T>>;

struct RingBufferDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  // Verifier logs run to many kilobytes: format into a heap string, not a fixed buffer,
  // so the line that explains a rejected program is not cut off.
  char* buf = nullptr;
  int n = vasprintf(&buf, fmt, ap);
  if (n < 0) return 0;
  std::string_view s(buf, static_cast<size_t>(n));
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  if (level == LIBBPF_WARN)
    spdlog::warn("libbpf: {}", s);
  else
    spdlog::debug("libbpf: {}", s);
  free(buf);
  return 0;
}

const char* kStatNames[AC_STAT_MAX] = {"events", "ringbuf_full", "truncated", "read_fault", "task_map_full"};

}  // namespace

const char* stat_name(int reason) { return reason >= 0 && reason < AC_STAT_MAX ? kStatNames[reason] : "unknown"; }

struct BpfMonitor::Impl {
  BpfSkeleton<agentcage_bpf> skel;
  std::unique_ptr<ring_buffer, RingBufferDeleter> rb;
  const RecordFn* fn = nullptr;  // valid only during poll()/drain()
  int handled = 0;

  static int on_record(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    if (self->fn) (*self->fn)(std::span<const std::byte>(static_cast<const std::byte*>(data), size));
    ++self->handled;
    return 0;
  }
};

BpfMonitor::BpfMonitor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpfMonitor::~BpfMonitor() = default;

Result<std::unique_ptr<BpfMonitor>> BpfMonitor::start(const MonitorOptions& opts) {
  libbpf_set_print(libbpf_print);
  const std::string priv_hint = "loading BPF programs needs root (CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN)";

  auto impl = std::make_unique<Impl>();
  impl->skel.reset(agentcage_bpf::open());
  if (!impl->skel) return sys_error("bpf_object__open(agentcage_bpf)", errno, "the kernel needs BTF (/sys/kernel/btf/vmlinux)");
  auto* s = impl->skel.get();

  if (int e = bpf_map__set_max_entries(s->maps.ac_events, opts.ring_bytes); e != 0)
    return sys_error("bpf_map__set_max_entries(ac_events, " + std::to_string(opts.ring_bytes) + ")", -e,
                     "the ring size must be a power of two and a multiple of the page size");
  if (int e = agentcage_bpf::load(s); e != 0)
    return sys_error("bpf_object__load(agentcage_bpf)", -e, geteuid() != 0 ? priv_hint : "see the libbpf messages above");

  ac_config cfg{};
  cfg.host_mode = opts.host_mode ? 1 : 0;
  cfg.self_tgid = static_cast<uint32_t>(::getpid());
  // A threshold the ring can never reach would leave the reader to its poll timeout
  // alone: cap it at a quarter of the ring so bursts still wake it early.
  cfg.wakeup_bytes = std::min(opts.wakeup_bytes, opts.ring_bytes / 4);
  uint32_t zero = 0;
  if (bpf_map__update_elem(s->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");

  if (int e = agentcage_bpf::attach(s); e != 0)
    return sys_error("bpf_object__attach(agentcage_bpf)", -e, geteuid() != 0 ? priv_hint : "");

  impl->rb.reset(ring_buffer__new(bpf_map__fd(s->maps.ac_events), &Impl::on_record, impl.get(), nullptr));
  if (!impl->rb) return sys_error("ring_buffer__new(ac_events)");
  spdlog::debug("bpf monitor attached: ring {} bytes, wakeup at {} bytes, host_mode={}", opts.ring_bytes,
                opts.wakeup_bytes, opts.host_mode);
  return std::unique_ptr<BpfMonitor>(new BpfMonitor(std::move(impl)));
}

Status BpfMonitor::track_cgroup(uint64_t cgroup_id, uint64_t sandbox) {
  if (bpf_map__update_elem(impl_->skel->maps.ac_cgroups, &cgroup_id, sizeof cgroup_id, &sandbox, sizeof sandbox,
                           BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_cgroups)");
  return {};
}

Status BpfMonitor::untrack_cgroup(uint64_t cgroup_id) {
  if (bpf_map__delete_elem(impl_->skel->maps.ac_cgroups, &cgroup_id, sizeof cgroup_id, 0) != 0 && errno != ENOENT)
    return sys_error("bpf_map_delete_elem(ac_cgroups)");
  return {};
}

Status BpfMonitor::set_host_mode(bool on) {
  uint32_t zero = 0;
  ac_config cfg{};
  if (bpf_map__lookup_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0)
    return sys_error("bpf_map_lookup_elem(ac_config_map)");
  cfg.host_mode = on ? 1 : 0;
  if (bpf_map__update_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");
  return {};
}

Result<int> BpfMonitor::poll(int timeout_ms, const RecordFn& fn) {
  impl_->fn = &fn;
  impl_->handled = 0;
  int r = ring_buffer__poll(impl_->rb.get(), timeout_ms);
  // Records below the wakeup threshold do not wake epoll: pick them up after a timeout.
  if (r == 0) r = ring_buffer__consume(impl_->rb.get());
  impl_->fn = nullptr;
  if (r < 0 && r != -EINTR) return sys_error("ring_buffer__poll(ac_events)", -r);
  return impl_->handled;
}

Result<int> BpfMonitor::drain(const RecordFn& fn) {
  impl_->fn = &fn;
  impl_->handled = 0;
  int r = ring_buffer__consume(impl_->rb.get());
  impl_->fn = nullptr;
  if (r < 0) return sys_error("ring_buffer__consume(ac_events)", -r);
  return impl_->handled;
}

uint64_t BpfMonitor::prog_misses() const {
  uint64_t total = 0;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, impl_->skel->obj) {
    int fd = bpf_program__fd(prog);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) total += info.recursion_misses;
  }
  return total;
}

KernelStats BpfMonitor::stats() const {
  KernelStats out{};
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> vals(static_cast<size_t>(ncpu));
  for (uint32_t k = 0; k < AC_STAT_MAX; ++k) {
    if (bpf_map__lookup_elem(impl_->skel->maps.ac_stats, &k, sizeof k, vals.data(), vals.size() * sizeof(uint64_t),
                             0) != 0)
      continue;
    for (uint64_t v : vals) out[k] += v;
  }
  return out;
}

}  // namespace agentcage::core
