// SPDX-License-Identifier: Apache-2.0
#include "core/kernel/bpf_monitor.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <cstring>

#include <fmt/format.h>
#include <algorithm>

#include <spdlog/spdlog.h>

#include <cstring>
#include <optional>

#include "agentcage_bpf.skel.h"
#include "core/base/fs.h"
#include "core/base/mountinfo.h"
#include "core/base/unique_fd.h"

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

const char* kStatNames[AC_STAT_MAX] = {"events",     "ringbuf_full",    "truncated", "read_fault",
                                      "task_map_full", "net_denied", "net_kill_failed", "shed", "folded",
                                      "exec_kill_failed"};

// uapi values newer than the build host's linux/bpf.h may be (net.bpf.c asserts them).
constexpr int kAttachUnixConnect = 49;  // BPF_CGROUP_UNIX_CONNECT
constexpr int kAttachUnixSendmsg = 50;  // BPF_CGROUP_UNIX_SENDMSG

// Feature probes, not version checks, answered from the running kernel's BTF. Parsing
// /sys/kernel/btf/vmlinux costs ~40 ms of CPU (6 MB): one parse per process answers
// every probe (it was one parse per probe, three per load and six with the LSM
// fallback, on the start-up path of every run).
struct KernelBtfFeatures {
  bool rdonly_cast = false;   // kfunc bpf_rdonly_cast (6.2+)
  bool unix_connect = false;  // attach type BPF_CGROUP_UNIX_CONNECT (6.7+)
  bool unix_sendmsg = false;  // attach type BPF_CGROUP_UNIX_SENDMSG
  int lsm_file_open = -1;     // BTF id of bpf_lsm_file_open, the hook an LSM probe attaches to
};

KernelBtfFeatures probe_kernel_btf() {
  KernelBtfFeatures f;
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return f;
  f.rdonly_cast = btf__find_by_name_kind(vmlinux, "bpf_rdonly_cast", BTF_KIND_FUNC) >= 0;
  f.lsm_file_open = btf__find_by_name_kind(vmlinux, "bpf_lsm_file_open", BTF_KIND_FUNC);
  int id = btf__find_by_name_kind(vmlinux, "bpf_attach_type", BTF_KIND_ENUM);
  if (id > 0) {
    const btf_type* t = btf__type_by_id(vmlinux, static_cast<uint32_t>(id));
    const struct btf_enum* e = btf_enum(t);
    for (int i = 0; i < btf_vlen(t); ++i) {
      const char* n = btf__name_by_offset(vmlinux, e[i].name_off);
      f.unix_connect |= std::strcmp(n, "BPF_CGROUP_UNIX_CONNECT") == 0;
      f.unix_sendmsg |= std::strcmp(n, "BPF_CGROUP_UNIX_SENDMSG") == 0;
    }
  }
  btf__free(vmlinux);
  return f;
}

const KernelBtfFeatures& kernel_btf() {
  static const KernelBtfFeatures f = probe_kernel_btf();  // the kernel does not change under us
  return f;
}

}  // namespace

const char* stat_name(int reason) { return reason >= 0 && reason < AC_STAT_MAX ? kStatNames[reason] : "unknown"; }

struct BpfMonitor::Impl {
  BpfSkeleton<agentcage_bpf> skel;
  std::mutex config_mu;  // ac_config_map is read, changed and written back
  bool unix_hooks = false;
  std::optional<Error> net_error;  // why the network programs are not attached

  // Network programs: attached once to the cgroup2 root (links are always multi-attach,
  // so other programs there keep running) and filtered in the kernel by ac_tracked():
  // a sandboxed process that moves to another cgroup stays under its policy. See the
  // top of bpf/net.bpf.c. The links belong to the skeleton and go with it; on failure
  // the ones already made are destroyed, so it is all or nothing.
  Status attach_net() {
    auto* s = skel.get();
    auto root = cgroup2_mount();
    if (!root) return std::unexpected(root.error());
    UniqueFd root_fd(::open(root->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd) return sys_error("open(" + *root + ")");
    struct CgroupProg {
      bpf_program* prog;
      bpf_link** link;
      bool enabled;
    };
    const CgroupProg progs[] = {{s->progs.cg__connect4, &s->links.cg__connect4, true},
                                {s->progs.cg__connect6, &s->links.cg__connect6, true},
                                {s->progs.cg__sendmsg4, &s->links.cg__sendmsg4, true},
                                {s->progs.cg__sendmsg6, &s->links.cg__sendmsg6, true},
                                {s->progs.cg__bind4, &s->links.cg__bind4, true},
                                {s->progs.cg__bind6, &s->links.cg__bind6, true},
                                {s->progs.cg__sock_create, &s->links.cg__sock_create, true},
                                {s->progs.cg__recvmsg4, &s->links.cg__recvmsg4, true},
                                {s->progs.cg__recvmsg6, &s->links.cg__recvmsg6, true},
                                {s->progs.cg__getpeername4, &s->links.cg__getpeername4, true},
                                {s->progs.cg__getpeername6, &s->links.cg__getpeername6, true},
                                {s->progs.cg__connect_unix, &s->links.cg__connect_unix, unix_hooks},
                                {s->progs.cg__sendmsg_unix, &s->links.cg__sendmsg_unix, unix_hooks}};
    for (const auto& p : progs) {
      if (!p.enabled) continue;
      *p.link = bpf_program__attach_cgroup(p.prog, root_fd.get());
      if (*p.link) continue;
      int err = errno;
      for (const auto& q : progs) {
        bpf_link__destroy(*q.link);  // accepts NULL
        *q.link = nullptr;
      }
      return sys_error(fmt::format("bpf_link_create({}, cgroup {})", bpf_program__name(p.prog), *root), err,
                       "a program attached to the cgroup2 root without BPF_F_ALLOW_MULTI blocks others");
    }
    return {};
  }

  std::unique_ptr<ring_buffer, RingBufferDeleter> rb;
  UniqueFd wake_fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};  // poll()'s early exit, see wake()
  // Pinning (MonitorOptions::pin_dir): pin_root/<tag of this BPF object>/{maps,links}/.
  std::string pin_root, pin_path;
  bool adopted = false;
  UniqueFd pin_lock;                    // flock on pin_root, held for this object's life
  std::vector<UniqueFd> adopted_links;  // for prog_misses(): the programs are not ours
  bool lsm_active = false;
  std::string lsm_status;
  const RecordFn* fn = nullptr;  // valid only during poll()/drain()
  int handled = 0;
  uint64_t last_sweep_ns = 0;  // take_summaries(): boot ns of the last walk

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

// The programs skip this process's own activity (self_tgid): written at every start,
// also over adopted maps, where it names the previous process.
Status write_config(agentcage_bpf* s, const MonitorOptions& opts) {
  ac_config cfg{};
  cfg.host_mode = opts.host_mode ? 1 : 0;
  cfg.self_tgid = static_cast<uint32_t>(::getpid());
  // A threshold the ring can never reach would leave the reader to its poll timeout
  // alone: cap it at a quarter of the ring so bursts still wake it early.
  uint32_t ring = bpf_map__max_entries(s->maps.ac_events);
  cfg.wakeup_bytes = std::min(opts.wakeup_bytes, ring / 4);
  uint32_t zero = 0;
  // The fold hash's key (abi.h): secret, so an agent cannot make two paths hash alike,
  // and kept over adopted maps, so the folds the previous process counted stay keyed.
  ac_config old{};
  if (bpf_map__lookup_elem(s->maps.ac_config_map, &zero, sizeof zero, &old, sizeof old, 0) == 0 && old.fold_seed) {
    cfg.fold_seed = old.fold_seed;
    cfg.audit_sandboxes = old.audit_sandboxes;  // the adopted sandboxes' audit stays on
  }
  while (!cfg.fold_seed)
    if (::getrandom(&cfg.fold_seed, sizeof cfg.fold_seed, 0) != sizeof cfg.fold_seed)
      return sys_error("getrandom(fold seed)");
  if (bpf_map__update_elem(s->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");
  return {};
}

// Opens, loads, configures and attaches the skeleton, with or without the BPF LSM
// programs. Without them, they are switched off before load (autoload) so the verifier
// never sees them and no attach is tried.
Result<BpfSkeleton<agentcage_bpf>> load_skeleton(const MonitorOptions& opts, bool lsm, bool* unix_hooks) {
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
  // One sys_exit program: the BTF-load variant where the kernel has bpf_rdonly_cast
  // (6.2+), the CO-RE variant elsewhere (e.g. Debian 12's 6.1).
  bool rdonly_cast = kernel_btf().rdonly_cast;
  bpf_program__set_autoload(rdonly_cast ? s->progs.tp_btf__sys_exit_compat : s->progs.tp_btf__sys_exit, false);
  spdlog::debug("sys_exit program: {}", rdonly_cast ? "BTF path walk (bpf_rdonly_cast)" : "CO-RE path walk (compat)");
  if (int e = bpf_map__set_max_entries(s->maps.ac_events, opts.ring_bytes); e != 0)
    return sys_error("bpf_map__set_max_entries(ac_events, " + std::to_string(opts.ring_bytes) + ")", -e,
                     "the ring size must be a power of two and a multiple of the page size");
  // libbpf 1.1 does not know the unix sock_addr section names: set type and attach
  // type by hand where the kernel has them, leave the programs out where it does not.
  *unix_hooks = kernel_btf().unix_connect && kernel_btf().unix_sendmsg;
  for (auto [prog, type] : {std::pair{s->progs.cg__connect_unix, kAttachUnixConnect},
                            std::pair{s->progs.cg__sendmsg_unix, kAttachUnixSendmsg}}) {
    if (*unix_hooks) {
      bpf_program__set_type(prog, BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
      bpf_program__set_expected_attach_type(prog, static_cast<bpf_attach_type>(type));
    } else {
      bpf_program__set_autoload(prog, false);
    }
  }
  if (!*unix_hooks)
    spdlog::info("kernel has no cgroup unix sock_addr hooks: unix connect/sendmsg not observed or enforced");

  if (int e = agentcage_bpf::load(s); e != 0)
    return sys_error("bpf_object__load(agentcage_bpf)", -e, geteuid() != 0 ? priv_hint : "see the libbpf messages above");

  if (auto st = write_config(s, opts); !st) return std::unexpected(st.error());

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

// Whether the kernel loads a BPF LSM program at all: a two-instruction one on file_open.
// Where it refuses (EPERM here: the hooks' trampolines cannot be made), loading the whole
// object with its LSM programs would verify every other program (~0.2 s, most of a run's
// start-up) and then fail on the last one, to be loaded a second time without them.
// Returns "" when it loads, or why not.
std::string lsm_load_refused() {
  int btf_id = kernel_btf().lsm_file_open;
  if (btf_id < 0) return "the kernel's BTF has no bpf_lsm_file_open (built without CONFIG_BPF_LSM)";
  const bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0}};
  LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = BPF_LSM_MAC,
              .attach_btf_id = static_cast<uint32_t>(btf_id));
  int fd = bpf_prog_load(BPF_PROG_TYPE_LSM, "ac_lsm_probe", "GPL", insns, 2, &o);
  if (fd >= 0) {
    ::close(fd);
    return "";
  }
  return fmt::format("the kernel refused a BPF LSM program ({})", std::strerror(errno));
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

namespace pins {

// The pins of one build of the BPF object live under a directory named by its hash: a
// daemon adopts only programs and maps whose layout it was built against.
std::string object_tag() {
  size_t size = 0;
  const auto* p = static_cast<const unsigned char*>(agentcage_bpf::elf_bytes(&size));
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

bool on_bpffs(const std::string& path) {
  struct statfs st{};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The pin root must be on bpffs. Debian mounts it at /sys/fs/bpf with systemd; a machine
// without (a container, a minimal boot) gets it mounted here, as Cilium and Tetragon do.
Status prepare_root(const std::string& root) {
  std::string parent = root.substr(0, root.rfind('/'));
  if (parent.empty()) parent = "/";
  if (!on_bpffs(parent) && parent == "/sys/fs/bpf") {
    if (::mount("bpffs", "/sys/fs/bpf", "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0)
      return sys_error("mount(bpffs, /sys/fs/bpf)", errno, "mount bpffs there, or pass another pin directory on bpffs");
    spdlog::info("mounted bpffs at /sys/fs/bpf");
  }
  if (!on_bpffs(parent))
    return error("pin directory " + root + ": " + parent + " is not a bpffs mount",
                 "mount -t bpf bpffs /sys/fs/bpf, or choose a pin directory on bpffs");
  // bpffs keeps names with a '.' for itself (bpf_lookup refuses them): mkdir would fail
  // with a bare EPERM that reads like a permission problem.
  if (std::string leaf = root.substr(root.rfind('/') + 1); leaf.find('.') != std::string::npos)
    return error("pin directory " + root + ": bpffs refuses names containing '.' (mkdir fails with EPERM)",
                 "choose a name of letters, digits, '-' and '_', such as " + parent + "/agentcage");
  for (const std::string& d : {root}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir(" + d + ")");
  }
  return {};
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

// Unlinks every pin of one build: "ready" first, so a half-removed directory is never
// taken for a complete one; links before maps.
Status remove_tree(const std::string& dir) {
  Status st;
  auto rm = [&](const std::string& p) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT && st) st = sys_error("unlink(" + p + ")");
  };
  rm(dir + "/ready");
  for (const char* sub : {"links", "maps"}) {
    for (const auto& n : entries(dir + "/" + sub)) rm(dir + "/" + sub + "/" + n);
    ::rmdir((dir + "/" + sub).c_str());
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT && st) st = sys_error("rmdir(" + dir + ")");
  return st;
}

// Pins every map and every live link of a freshly attached skeleton, then "ready" (a
// second pin of the config map) as the commit mark adopt() looks for.
Status pin_all(agentcage_bpf* s, const std::string& dir, bool lsm_active) {
  for (const std::string& d : {dir, dir + "/maps", dir + "/links"})
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir(" + d + ")");
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, s->obj) {
    if (bpf_map__is_internal(m)) continue;
    std::string p = dir + "/maps/" + bpf_map__name(m);
    if (int e = bpf_map__pin(m, p.c_str()); e != 0) return sys_error("bpf_obj_pin(" + p + ")", -e);
  }
  for (int i = 0; i < s->skeleton->prog_cnt; ++i) {
    bpf_link* l = *s->skeleton->progs[i].link;
    if (!l) continue;
    // Attached but never run (bpf not an active LSM): not pinned, so an adopter does not
    // take BPF LSM for active.
    if (!lsm_active && bpf_program__type(*s->skeleton->progs[i].prog) == BPF_PROG_TYPE_LSM) continue;
    std::string p = dir + "/links/" + s->skeleton->progs[i].name;
    if (int e = bpf_link__pin(l, p.c_str()); e != 0) return sys_error("bpf_obj_pin(" + p + ")", -e);
  }
  std::string ready = dir + "/ready";
  if (bpf_obj_pin(bpf_map__fd(s->maps.ac_config_map), ready.c_str()) != 0) return sys_error("bpf_obj_pin(" + ready + ")");
  return {};
}

// Takes over a complete pin directory: every map is the pinned one (the ring buffer with
// what it queued, the tracked cgroups and tasks, the network policies), no program is
// loaded (the pinned links keep the previous process's programs attached and running).
Result<BpfSkeleton<agentcage_bpf>> adopt(const std::string& dir, BpfMonitor::Impl& impl) {
  BpfSkeleton<agentcage_bpf> skel(agentcage_bpf::open());
  if (!skel) return sys_error("bpf_object__open(agentcage_bpf)");
  auto* s = skel.get();
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, s->obj) {
    if (bpf_map__is_internal(m)) continue;
    std::string p = dir + "/maps/" + bpf_map__name(m);
    UniqueFd fd(bpf_obj_get(p.c_str()));
    if (!fd) return sys_error("bpf_obj_get(" + p + ")");
    // The ring keeps the size it was made with (--ring-bytes may differ this time).
    bpf_map_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return sys_error("bpf_obj_get_info_by_fd(" + p + ")");
    (void)bpf_map__set_max_entries(m, info.max_entries);
    if (int e = bpf_map__reuse_fd(m, fd.get()); e != 0) return sys_error("bpf_map__reuse_fd(" + p + ")", -e);
  }
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, s->obj) bpf_program__set_autoload(prog, false);
  if (int e = agentcage_bpf::load(s); e != 0) return sys_error("bpf_object__load(agentcage_bpf, pinned maps)", -e);
  for (const auto& n : entries(dir + "/links")) {
    std::string p = dir + "/links/" + n;
    UniqueFd fd(bpf_obj_get(p.c_str()));
    if (!fd) return sys_error("bpf_obj_get(" + p + ")");
    impl.adopted_links.push_back(std::move(fd));
  }
  impl.unix_hooks = exists(dir + "/links/cg__connect_unix");
  impl.lsm_active = exists(dir + "/links/lsm__file_open");
  if (!exists(dir + "/links/cg__connect4"))
    impl.net_error = Error{0, "the pinned programs of the previous agentcaged have no network programs", {}, {}};
  return skel;
}

}  // namespace pins

Result<std::unique_ptr<BpfMonitor>> BpfMonitor::start(const MonitorOptions& opts) {
  libbpf_set_print(libbpf_print);
  auto impl = std::make_unique<Impl>();
  if (!impl->wake_fd) return sys_error("eventfd(monitor wake)");
  if (!opts.pin_dir.empty()) {
    if (auto st = pins::prepare_root(opts.pin_dir); !st) return std::unexpected(st.error());
    // One process per pin directory: a second would adopt, and on its clean stop remove,
    // the pins of one that still runs.
    impl->pin_lock.reset(::open(opts.pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!impl->pin_lock) return sys_error("open(" + opts.pin_dir + ")");
    if (::flock(impl->pin_lock.get(), LOCK_EX | LOCK_NB) != 0)
      return sys_error("flock(" + opts.pin_dir + ")", errno,
                       errno == EWOULDBLOCK ? "another agentcaged uses this BPF pin directory: stop it, or give this one "
                                              "its own --bpf-pin-dir and --state-dir"
                                            : "");
    impl->pin_root = opts.pin_dir;
    impl->pin_path = opts.pin_dir + "/" + pins::object_tag();
    if (auto adopted = adopt_pinned(opts, impl)) return adopted;
  }
  return load_fresh(opts, std::move(impl));
}

// The pins of this build, when complete, are taken over; an incomplete set (a process
// that died while pinning) is removed; a complete set that cannot be taken over is moved
// aside as stale, so its programs keep enforcing until the caller has dealt with the
// sandboxes they enforce (has_stale_pins()).
// On success `impl` is moved into the returned monitor; otherwise it is left as it was.
std::unique_ptr<BpfMonitor> BpfMonitor::adopt_pinned(const MonitorOptions& opts, std::unique_ptr<Impl>& impl) {
  const std::string& dir = impl->pin_path;
  if (!pins::exists(dir + "/ready")) {
    if (pins::exists(dir)) {
      spdlog::warn("removing incomplete BPF pins in {}", dir);
      (void)pins::remove_tree(dir);
    }
    return nullptr;
  }
  auto skel = pins::adopt(dir, *impl);
  Status st = skel ? write_config(skel->get(), opts) : Status(std::unexpected(skel.error()));
  if (skel && st) impl->rb.reset(ring_buffer__new(bpf_map__fd((*skel)->maps.ac_events), &Impl::on_record, impl.get(), nullptr));
  if (!st || !impl->rb) {
    std::string aside = impl->pin_root + "/stale-" + std::to_string(::getpid());
    spdlog::error("cannot adopt the BPF pins in {} ({}); moved aside to {}", dir,
                  st ? "ring_buffer__new failed" : st.error().message(), aside);
    if (::rename(dir.c_str(), aside.c_str()) != 0) (void)pins::remove_tree(dir);
    impl->adopted_links.clear();
    impl->net_error.reset();
    impl->unix_hooks = impl->lsm_active = false;
    impl->rb.reset();
    return nullptr;
  }
  impl->skel = std::move(*skel);
  impl->adopted = true;
  impl->lsm_status = impl->lsm_active ? "active (adopted from the previous agentcaged)" : "off (as in the previous agentcaged)";
  spdlog::info("adopted the BPF programs and maps pinned in {} ({} links)", dir, impl->adopted_links.size());
  return std::unique_ptr<BpfMonitor>(new BpfMonitor(std::move(impl)));
}

Result<std::unique_ptr<BpfMonitor>> BpfMonitor::load_fresh(const MonitorOptions& opts, std::unique_ptr<Impl> impl) {

  bool lsm = opts.lsm;
  std::string note;
  if (!lsm) {
    impl->lsm_status = "off: not requested";
  } else if (auto why = lsm_unavailable_reason(&note); !why.empty()) {
    lsm = false;
    impl->lsm_status = "off: " + why;
  } else if (auto refused = lsm_load_refused(); !refused.empty()) {
    lsm = false;
    impl->lsm_status = "off: " + refused;
  }
  g_libbpf_quiet = lsm;
  auto skel = load_skeleton(opts, lsm, &impl->unix_hooks);
  g_libbpf_quiet = false;
  if (!skel && lsm) {
    // Kernels with BPF LSM compiled in can still refuse it (e.g. EPERM where the hooks'
    // trampolines cannot be patched). Monitoring must not depend on it: retry without.
    const auto& e = skel.error();
    impl->lsm_status = fmt::format("off: the kernel refused the BPF LSM programs ({}: {})", e.context,
                                   e.code ? std::strerror(e.code) : "failed");
    lsm = false;
    spdlog::debug("bpf lsm: {}; retrying without them", impl->lsm_status);
    skel = load_skeleton(opts, false, &impl->unix_hooks);
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

  // Monitoring degrades, enforcement fails closed: without the network programs the
  // monitor still records processes, and install_net_policy() refuses with this error.
  if (auto st = impl->attach_net(); !st) {
    spdlog::warn("network programs not attached: network activity is not recorded and network policies are "
                 "refused: {}",
                 st.error().message());
    impl->net_error = st.error();
  }

  auto* s = impl->skel.get();
  impl->rb.reset(ring_buffer__new(bpf_map__fd(s->maps.ac_events), &Impl::on_record, impl.get(), nullptr));
  if (!impl->rb) return sys_error("ring_buffer__new(ac_events)");
  if (!impl->pin_path.empty()) {
    // Fail closed: a daemon whose enforcement would vanish with it does not start.
    if (auto st = pins::pin_all(s, impl->pin_path, impl->lsm_active); !st) {
      (void)pins::remove_tree(impl->pin_path);
      return std::unexpected(st.error());
    }
    spdlog::debug("bpf programs and maps pinned in {}", impl->pin_path);
  }
  spdlog::debug("bpf monitor attached: ring {} bytes, wakeup at {} bytes, host_mode={}", opts.ring_bytes,
                opts.wakeup_bytes, opts.host_mode);
  return std::unique_ptr<BpfMonitor>(new BpfMonitor(std::move(impl)));
}

bool BpfMonitor::adopted() const { return impl_->adopted; }

Status BpfMonitor::unpin() {
  if (impl_->pin_path.empty()) return {};
  auto st = pins::remove_tree(impl_->pin_path);
  ::rmdir(impl_->pin_root.c_str());  // when no other build's pins are left in it
  return st;
}

bool BpfMonitor::has_stale_pins() const {
  if (impl_->pin_root.empty()) return false;
  std::string mine = impl_->pin_path.substr(impl_->pin_root.size() + 1);
  for (const auto& n : pins::entries(impl_->pin_root))
    if (n != mine) return true;
  return false;
}

Status BpfMonitor::remove_stale_pins() {
  if (impl_->pin_root.empty()) return {};
  std::string mine = impl_->pin_path.substr(impl_->pin_root.size() + 1);
  Status st;
  for (const auto& n : pins::entries(impl_->pin_root)) {
    if (n == mine) continue;
    spdlog::info("removing stale BPF pins {}/{}", impl_->pin_root, n);
    if (auto r = pins::remove_tree(impl_->pin_root + "/" + n); !r && st) st = r;
  }
  return st;
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

Status BpfMonitor::track_cgroup(uint64_t cgroup_id, uint64_t sandbox, uint32_t sandbox_flags) {
  if (sandbox_flags == 0) {
    // A key reused by a sandbox without flags must not inherit a predecessor's.
    if (bpf_map__delete_elem(impl_->skel->maps.ac_sandbox_flags, &sandbox, sizeof sandbox, 0) != 0 && errno != ENOENT)
      return sys_error("bpf_map_delete_elem(ac_sandbox_flags)");
  } else if (bpf_map__update_elem(impl_->skel->maps.ac_sandbox_flags, &sandbox, sizeof sandbox, &sandbox_flags,
                                  sizeof sandbox_flags, BPF_ANY) != 0) {
    return sys_error("bpf_map_update_elem(ac_sandbox_flags)", errno,
                     errno == E2BIG ? "too many sandboxes with kernel-enforced actions: close some" : "");
  }
  if (bpf_map__update_elem(impl_->skel->maps.ac_cgroups, &cgroup_id, sizeof cgroup_id, &sandbox, sizeof sandbox,
                           BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_cgroups)");
  return count_audit_sandboxes();
}

Status BpfMonitor::untrack_cgroup(uint64_t cgroup_id, uint64_t sandbox) {
  if (bpf_map__delete_elem(impl_->skel->maps.ac_cgroups, &cgroup_id, sizeof cgroup_id, 0) != 0 && errno != ENOENT)
    return sys_error("bpf_map_delete_elem(ac_cgroups)");
  if (bpf_map__delete_elem(impl_->skel->maps.ac_sandbox_flags, &sandbox, sizeof sandbox, 0) != 0 && errno != ENOENT)
    return sys_error("bpf_map_delete_elem(ac_sandbox_flags)");
  if (bpf_map__delete_elem(impl_->skel->maps.ac_audit_syscalls, &sandbox, sizeof sandbox, 0) != 0 && errno != ENOENT)
    return sys_error("bpf_map_delete_elem(ac_audit_syscalls)");
  return count_audit_sandboxes();
}

Status BpfMonitor::set_audit_syscalls(uint64_t sandbox, std::span<const int> nrs) {
  ac_syscall_set set{};
  for (int nr : nrs)
    if (nr >= 0 && nr < AC_SYSCALL_SET_BITS) set.bits[nr / 64] |= 1ull << (nr % 64);
  if (bpf_map__update_elem(impl_->skel->maps.ac_audit_syscalls, &sandbox, sizeof sandbox, &set, sizeof set, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_audit_syscalls)");
  return {};
}

// ac_config.audit_sandboxes, from ac_sandbox_flags itself rather than kept as a running
// count: a daemon that re-adopts (or kills) its predecessor's sandboxes ends up exact.
Status BpfMonitor::count_audit_sandboxes() {
  std::lock_guard lk(impl_->config_mu);
  bpf_map* flags = impl_->skel->maps.ac_sandbox_flags;
  uint32_t n = 0;
  uint64_t key = 0, next = 0;
  for (const void* prev = nullptr; bpf_map__get_next_key(flags, prev, &next, sizeof next) == 0; prev = &key) {
    key = next;
    uint32_t v = 0;
    if (bpf_map__lookup_elem(flags, &key, sizeof key, &v, sizeof v, 0) == 0 && (v & AC_SB_AUDIT_SYSCALLS)) ++n;
  }
  uint32_t zero = 0;
  ac_config cfg{};
  if (bpf_map__lookup_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0)
    return sys_error("bpf_map_lookup_elem(ac_config_map)");
  if (cfg.audit_sandboxes == n) return {};
  cfg.audit_sandboxes = n;
  if (bpf_map__update_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");
  return {};
}

Status BpfMonitor::set_host_mode(bool on) {
  std::lock_guard lk(impl_->config_mu);
  uint32_t zero = 0;
  ac_config cfg{};
  if (bpf_map__lookup_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0)
    return sys_error("bpf_map_lookup_elem(ac_config_map)");
  cfg.host_mode = on ? 1 : 0;
  if (bpf_map__update_elem(impl_->skel->maps.ac_config_map, &zero, sizeof zero, &cfg, sizeof cfg, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_config_map)");
  return {};
}

bool BpfMonitor::has_unix_hooks() const { return impl_->unix_hooks; }

Status BpfMonitor::install_net_policy(uint64_t sandbox, const CompiledNetPolicy& policy) {
  if (impl_->net_error)
    return error("network policy cannot be enforced: " + impl_->net_error->message(),
                 "the cgroup sock_addr programs must be attached to the cgroup2 root");
  if (policy.restricts_unix && !impl_->unix_hooks)
    return error("network policy restricts unix sockets, but this kernel has no cgroup unix sock_addr hooks",
                 "allow all unix sockets (--allow-unix '*'), or use a kernel with BPF_CGROUP_UNIX_CONNECT (6.7+)");
  for (const auto& r : policy.rules)
    if (bpf_map__update_elem(impl_->skel->maps.ac_net_rules, &r.key, sizeof r.key, &r.value, sizeof r.value,
                             BPF_ANY) != 0)
      return sys_error("bpf_map_update_elem(ac_net_rules)", errno, "at most 65536 rules over all sandboxes");
  uint8_t one = 1;
  for (const auto& k : policy.unix_allow)
    if (bpf_map__update_elem(impl_->skel->maps.ac_net_unix, &k, sizeof k, &one, sizeof one, BPF_ANY) != 0)
      return sys_error("bpf_map_update_elem(ac_net_unix)");
  // Last: this entry switches enforcement on for the sandbox.
  if (bpf_map__update_elem(impl_->skel->maps.ac_net_policy, &sandbox, sizeof sandbox, &policy.sandbox,
                           sizeof policy.sandbox, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_net_policy)");
  return {};
}

Status BpfMonitor::remove_net_policy(uint64_t sandbox, const CompiledNetPolicy& policy) {
  Status st;
  auto del = [&](bpf_map* map, const void* key, size_t size, const char* name) {
    if (bpf_map__delete_elem(map, key, size, 0) != 0 && errno != ENOENT && st)
      st = sys_error(std::string("bpf_map_delete_elem(") + name + ")");
  };
  del(impl_->skel->maps.ac_net_policy, &sandbox, sizeof sandbox, "ac_net_policy");
  for (const auto& r : policy.rules) del(impl_->skel->maps.ac_net_rules, &r.key, sizeof r.key, "ac_net_rules");
  for (const auto& k : policy.unix_allow) del(impl_->skel->maps.ac_net_unix, &k, sizeof k, "ac_net_unix");
  if (auto f = forget_learned(sandbox); !f && st) st = f;
  return st;
}

Status BpfMonitor::learn_address(uint64_t sandbox, const ac_net_learned_key& key, const ac_net_learned_value& value) {
  (void)sandbox;
  if (bpf_map__update_elem(impl_->skel->maps.ac_net_learned, &key, sizeof key, &value, sizeof value, BPF_ANY) != 0)
    return sys_error("bpf_map_update_elem(ac_net_learned)", errno, "at most 65536 learned addresses over all sandboxes");
  return {};
}

Status BpfMonitor::unlearn_address(const ac_net_learned_key& key) {
  if (bpf_map__delete_elem(impl_->skel->maps.ac_net_learned, &key, sizeof key, 0) != 0 && errno != ENOENT)
    return sys_error("bpf_map_delete_elem(ac_net_learned)");
  return {};
}

std::optional<ac_name_orig> BpfMonitor::take_name_origin(uint64_t cookie) {
  ac_name_orig o{};
  if (bpf_map__lookup_and_delete_elem(impl_->skel->maps.ac_name_orig_map, &cookie, sizeof cookie, &o, sizeof o, 0) != 0)
    return std::nullopt;
  return o;
}

Status BpfMonitor::forget_learned(uint64_t sandbox) {
  // Collected first: deleting while iterating restarts the walk on some map types.
  std::vector<ac_net_learned_key> mine;
  ac_net_learned_key k{}, next{};
  const void* prev = nullptr;
  while (bpf_map__get_next_key(impl_->skel->maps.ac_net_learned, prev, &next, sizeof next) == 0) {
    if (next.sandbox == sandbox) mine.push_back(next);
    k = next;
    prev = &k;
  }
  Status st;
  for (const auto& m : mine)
    if (bpf_map__delete_elem(impl_->skel->maps.ac_net_learned, &m, sizeof m, 0) != 0 && errno != ENOENT && st)
      st = sys_error("bpf_map_delete_elem(ac_net_learned)");
  return st;
}

Result<int> BpfMonitor::poll(int timeout_ms, const RecordFn& fn) {
  impl_->fn = &fn;
  impl_->handled = 0;
  // The ring's epoll set and the wake eventfd, waited on together; then everything queued
  // is consumed whatever woke us: records below the wakeup threshold do not wake epoll
  // and are picked up after the timeout.
  pollfd fds[2] = {{ring_buffer__epoll_fd(impl_->rb.get()), POLLIN, 0}, {impl_->wake_fd.get(), POLLIN, 0}};
  if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
    impl_->fn = nullptr;
    return sys_error("poll(ac_events)");
  }
  if (fds[1].revents & POLLIN) {
    uint64_t n;
    (void)!::read(impl_->wake_fd.get(), &n, sizeof n);
  }
  int r = ring_buffer__consume(impl_->rb.get());
  impl_->fn = nullptr;
  if (r < 0) return sys_error("ring_buffer__consume(ac_events)", -r);
  return impl_->handled;
}

void BpfMonitor::wake() {
  uint64_t one = 1;
  (void)!::write(impl_->wake_fd.get(), &one, sizeof one);
}

Result<int> BpfMonitor::drain(const RecordFn& fn) {
  impl_->fn = &fn;
  impl_->handled = 0;
  int r = ring_buffer__consume(impl_->rb.get());
  impl_->fn = nullptr;
  if (r < 0) return sys_error("ring_buffer__consume(ac_events)", -r);
  return impl_->handled;
}

void BpfMonitor::take_summaries(uint64_t read_before_ns, bool all, const FoldFn& on_fold, const ShedFn& on_shed) {
  // Walks cost a syscall per entry: four times a second is soon enough for counts that
  // are at least a second old.
  constexpr uint64_t kSweepEveryNs = 250'000'000;
  if (!all && read_before_ns < impl_->last_sweep_ns + kSweepEveryNs) return;
  impl_->last_sweep_ns = read_before_ns;
  bpf_map* fold = impl_->skel->maps.ac_fold;
  // Collected first, deleted after: deleting while walking a hash restarts the walk.
  std::vector<ac_fold_key> idle;
  ac_fold_key k{}, next{};
  const void* prev = nullptr;
  while (bpf_map__get_next_key(fold, prev, &next, sizeof next) == 0) {
    ac_fold_value v{};
    // The record the fold follows was submitted before the caller's last read began, so
    // it has been handled (the count never comes before it); and, unless `all`, idle past
    // the window: the kernel no longer adds to this entry (its next failure starts a new
    // record), so nothing is counted into an entry being deleted.
    if (bpf_map__lookup_elem(fold, &next, sizeof next, &v, sizeof v, 0) == 0 && v.emit_ns < read_before_ns &&
        (all || v.last_ns + AC_FOLD_WINDOW_NS <= read_before_ns))
      idle.push_back(next);
    k = next;
    prev = &k;
  }
  for (const auto& key : idle) {
    ac_fold_value v{};
    if (bpf_map__lookup_and_delete_elem(fold, &key, sizeof key, &v, sizeof v, 0) == 0 && v.count) on_fold(key, v);
  }
  bpf_map* shed = impl_->skel->maps.ac_shed;
  std::vector<uint64_t> sandboxes;
  uint64_t sk = 0, snext = 0;
  prev = nullptr;
  while (bpf_map__get_next_key(shed, prev, &snext, sizeof snext) == 0) {
    sandboxes.push_back(snext);
    sk = snext;
    prev = &sk;
  }
  for (uint64_t sb : sandboxes) {
    uint64_t n = 0;
    if (bpf_map__lookup_and_delete_elem(shed, &sb, sizeof sb, &n, sizeof n, 0) == 0 && n) on_shed(sb, n);
  }
}

uint64_t BpfMonitor::prog_misses() const {
  uint64_t total = 0;
  // Adopted: the programs are the previous process's, reached through their links.
  for (const auto& l : impl_->adopted_links) {
    bpf_link_info li{};
    uint32_t len = sizeof li;
    if (bpf_obj_get_info_by_fd(l.get(), &li, &len) != 0) continue;
    UniqueFd pfd(bpf_prog_get_fd_by_id(li.prog_id));
    bpf_prog_info info{};
    len = sizeof info;
    if (pfd && bpf_obj_get_info_by_fd(pfd.get(), &info, &len) == 0) total += info.recursion_misses;
  }
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
