// SPDX-License-Identifier: Apache-2.0
#include "core/bpf_monitor.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agentcage_bpf.skel.h"
#include "core/cgroup.h"

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

// Set while trying the optional BPF LSM programs: their failure is expected on kernels
// without BPF LSM and is reported once, as a status, not as libbpf warnings.
std::atomic<bool> g_libbpf_quiet{false};

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  if (g_libbpf_quiet.load(std::memory_order_relaxed)) level = LIBBPF_INFO;
  char buf[1024];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view s(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1) : 0);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  if (level == LIBBPF_WARN)
    spdlog::warn("libbpf: {}", s);
  else
    spdlog::debug("libbpf: {}", s);
  return 0;
}

const char* kStatNames[AC_STAT_MAX] = {"events", "ringbuf_full", "truncated", "read_fault", "task_map_full"};

}  // namespace

const char* stat_name(int reason) { return reason >= 0 && reason < AC_STAT_MAX ? kStatNames[reason] : "unknown"; }

struct BpfMonitor::Impl {
  BpfSkeleton<agentcage_bpf> skel;
  std::unique_ptr<ring_buffer, RingBufferDeleter> rb;
  bool lsm_active = false;
  std::string lsm_status;
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

namespace {

// Opens, loads, configures and attaches the skeleton, with or without the BPF LSM
// programs. Without them, they are switched off before load (autoload) so the verifier
// never sees them and no attach is tried.
Result<BpfSkeleton<agentcage_bpf>> load_skeleton(const MonitorOptions& opts, bool lsm) {
  const std::string priv_hint = "loading BPF programs needs root (CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN)";
  BpfSkeleton<agentcage_bpf> skel(agentcage_bpf::open());
  if (!skel) return sys_error("bpf_object__open(agentcage_bpf)", errno, "the kernel needs BTF (/sys/kernel/btf/vmlinux)");
  auto* s = skel.get();

  if (!lsm) {
    bpf_program* p = nullptr;
    bpf_object__for_each_program(p, s->obj) {
      if (bpf_program__type(p) == BPF_PROG_TYPE_LSM) bpf_program__set_autoload(p, false);
    }
  }
  if (int e = bpf_map__set_max_entries(s->maps.ac_events, opts.ring_bytes); e != 0)
    return sys_error("bpf_map__set_max_entries(ac_events, " + std::to_string(opts.ring_bytes) + ")", -e,
                     "the ring size must be a power of two and a multiple of the page size");
  if (int e = agentcage_bpf::load(s); e != 0)
    return sys_error("bpf_object__load(agentcage_bpf)", -e, geteuid() != 0 ? priv_hint : "see the libbpf messages above");

  ac_config cfg{};
  cfg.host_mode = opts.host_mode ? 1 : 0;
  cfg.self_tgid = static_cast<uint32_t>(::getpid());
  cfg.wakeup_bytes = opts.wakeup_bytes;
  uint32_t zero = 0;
  if (bpf_map__update_elem(s->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");

  if (int e = agentcage_bpf::attach(s); e != 0)
    return sys_error("bpf_object__attach(agentcage_bpf)", -e, geteuid() != 0 ? priv_hint : "");
  return skel;
}

// Whether to try the BPF LSM programs. A BPF LSM program loads and attaches on a kernel
// built with CONFIG_BPF_LSM even when "bpf" is not among the active LSMs, and then never
// runs: so the active list decides, not a program-type probe; where the list cannot be
// read, lsm_self_test() decides after attach. Returns "" to try, or why not.
std::string lsm_unavailable_reason(std::string* note) {
  const char* path = "/sys/kernel/security/lsm";
  auto list = read_file(path);
  if (!list) {
    *note = fmt::format("{} unreadable (securityfs not mounted?)", path);
    return "";  // unknown: try, and fall back if the kernel refuses
  }
  std::string l = list->substr(0, list->find('\n'));
  for (size_t i = 0; i <= l.size();) {
    size_t j = l.find(',', i);
    if (j == std::string::npos) j = l.size();
    if (l.compare(i, j - i, "bpf") == 0) {
      *note = fmt::format("{}: {}", path, l);
      return "";
    }
    i = j + 1;
  }
  return fmt::format("the active LSMs ({}: {}) do not include bpf; boot with lsm={},bpf", path, l, l);
}

// Attached is not running: on a kernel with BPF LSM built in but not in the active list
// the programs attach and are never called. Open a file and see whether lsm/file_open
// noticed. Returns whether it did.
Result<bool> lsm_self_test(agentcage_bpf* s) {
  uint32_t zero = 0;
  ac_lsm_probe p{static_cast<uint32_t>(::getpid()), 0};
  if (bpf_map__update_elem(s->maps.ac_lsm_probe, &zero, sizeof zero, &p, sizeof p, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_lsm_probe)");
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open(/proc/self/stat)");
  ::close(fd);
  if (bpf_map__lookup_elem(s->maps.ac_lsm_probe, &zero, sizeof zero, &p, sizeof p, 0) != 0)
    return sys_error("bpf_map_lookup_elem(ac_lsm_probe)");
  bool seen = p.seen != 0;
  p = {};
  (void)bpf_map__update_elem(s->maps.ac_lsm_probe, &zero, sizeof zero, &p, sizeof p, BPF_ANY);
  return seen;
}

}  // namespace

Result<std::unique_ptr<BpfMonitor>> BpfMonitor::start(const MonitorOptions& opts) {
  libbpf_set_print(libbpf_print);
  auto impl = std::make_unique<Impl>();

  bool lsm = opts.lsm;
  std::string note;
  if (!lsm) {
    impl->lsm_status = "off: not requested";
  } else if (auto why = lsm_unavailable_reason(&note); !why.empty()) {
    lsm = false;
    impl->lsm_status = "off: " + why;
  }
  g_libbpf_quiet = lsm;
  auto skel = load_skeleton(opts, lsm);
  g_libbpf_quiet = false;
  if (!skel && lsm) {
    // Kernels with BPF LSM compiled in can still refuse it (e.g. EPERM where the hooks'
    // trampolines cannot be patched). Monitoring must not depend on it: retry without.
    const auto& e = skel.error();
    impl->lsm_status = fmt::format("off: the kernel refused the BPF LSM programs ({}: {})", e.context,
                                   e.code ? std::strerror(e.code) : "failed");
    lsm = false;
    spdlog::debug("bpf lsm: {}; retrying without them", impl->lsm_status);
    skel = load_skeleton(opts, false);
  }
  if (!skel) return std::unexpected(skel.error());
  impl->skel = std::move(*skel);
  if (lsm) {
    if (auto seen = lsm_self_test(impl->skel.get()); !seen) {
      lsm = false;
      impl->lsm_status = "off: self-test: " + seen.error().message();
    } else if (!*seen) {
      lsm = false;
      impl->lsm_status = "off: the BPF LSM programs attached but never ran (bpf is not an active LSM; boot with lsm=...,bpf)";
    }
  }
  impl->lsm_active = lsm;
  if (lsm) impl->lsm_status = note.empty() ? "active" : "active (" + note + ")";
  spdlog::debug("bpf lsm: {}", impl->lsm_status);

  auto* s = impl->skel.get();
  impl->rb.reset(ring_buffer__new(bpf_map__fd(s->maps.ac_events), &Impl::on_record, impl.get(), nullptr));
  if (!impl->rb) return sys_error("ring_buffer__new(ac_events)");
  spdlog::debug("bpf monitor attached: ring {} bytes, wakeup at {} bytes, host_mode={}", opts.ring_bytes,
                opts.wakeup_bytes, opts.host_mode);
  return std::unique_ptr<BpfMonitor>(new BpfMonitor(std::move(impl)));
}

bool BpfMonitor::lsm_active() const { return impl_->lsm_active; }
const std::string& BpfMonitor::lsm_status() const { return impl_->lsm_status; }

Status BpfMonitor::lsm_deny(std::span<const InodeRule> rules) {
  if (!impl_->lsm_active)
    return error("deny-by-inode rules need BPF LSM, which is " + impl_->lsm_status,
                 "use a kernel with CONFIG_BPF_LSM=y booted with \"bpf\" in lsm= (see vagrant/README.md)");
  for (const auto& r : rules) {
    if (bpf_map__update_elem(impl_->skel->maps.ac_lsm_inodes, &r.key, sizeof r.key, &r.rule, sizeof r.rule,
                             BPF_ANY) != 0)
      return sys_error(fmt::format("bpf_map_update_elem(ac_lsm_inodes, dev {:#x} ino {})", r.key.dev, r.key.ino));
  }
  return {};
}

Status BpfMonitor::lsm_forget(std::span<const InodeRule> rules) {
  for (const auto& r : rules) {
    if (bpf_map__delete_elem(impl_->skel->maps.ac_lsm_inodes, &r.key, sizeof r.key, 0) != 0 && errno != ENOENT)
      return sys_error(fmt::format("bpf_map_delete_elem(ac_lsm_inodes, dev {:#x} ino {})", r.key.dev, r.key.ino));
  }
  return {};
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
