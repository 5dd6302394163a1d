/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel-only helpers and the maps, declared once. Each *.bpf.c is compiled on its own
 * and `bpftool gen object` links them: __weak lets every object see the same map
 * definition, and the linker keeps exactly one.
 */
#ifndef AGENTCAGE_COMMON_BPF_H
#define AGENTCAGE_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <agentcage/abi.h>

/* The one ring buffer. Size set by user space before load (bpf_map__set_max_entries). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} ac_events SEC(".maps") __weak;

/* Sandbox cgroups: cgroup v2 id -> sandbox key. Written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} ac_cgroups SEC(".maps") __weak;

/*
 * Tracked processes: tgid -> sandbox key. A child inherits its parent's entry at fork,
 * so a process that moves itself out of the sandbox cgroup stays tracked.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} ac_tasks SEC(".maps") __weak;

/* Sandbox key -> enum ac_sandbox_flag bits. Written by user space with the sandbox's policy. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} ac_sandbox_flags SEC(".maps") __weak;

/* Sandbox key -> syscalls its profile would refuse (AC_SB_AUDIT_SYSCALLS). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ac_syscall_set);
} ac_audit_syscalls SEC(".maps") __weak;

/* Per-reason counters (enum ac_stat); user space sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ac_stats SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ac_config);
} ac_config_map SEC(".maps") __weak;

/*
 * Repeated identical failures (abi.h, AC_FOLD_WINDOW_NS). A plain hash, not an LRU: an
 * eviction would lose a count silently; full, a failure is simply recorded unfolded.
 * User space deletes the entries idle past the window, so it holds the recent ones only.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ac_fold_key);
	__type(value, struct ac_fold_value);
} ac_fold SEC(".maps") __weak;

/* Records refused to keep the ring's reserve, per sandbox key (0: host mode); user
 * space takes the counts (lookup and delete) and records them in-band as Loss events. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4097);
	__type(key, __u64);
	__type(value, __u64);
} ac_shed SEC(".maps") __weak;

/*
 * A page of zeroes that nothing writes. clang cannot inline a memset of a whole record
 * (over ~512 bytes it needs a libcall BPF lacks), so records are zeroed by one
 * bpf_probe_read_kernel() from here.
 */
#define AC_ZERO_BYTES 4096
struct ac_zero_page {
	char bytes[AC_ZERO_BYTES];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ac_zero_page);
} ac_zero SEC(".maps") __weak;

/*
 * Per-CPU scratch for building a path backwards (see path.bpf.h). Twice AC_PATH_MAX so
 * every masked offset plus a bounded length stays inside the value for the verifier.
 * BPF programs run with migration disabled; a preempting program on the same CPU could
 * reuse it mid-walk, which at worst garbles that one path (Tetragon accepts the same).
 */
struct ac_path_scratch {
	char buf[2 * AC_PATH_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ac_path_scratch);
} ac_scratch SEC(".maps") __weak;

static __always_inline void ac_stat_inc(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&ac_stats, &reason);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline struct ac_config *ac_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ac_config_map, &zero);
}

static __always_inline __u64 ac_task_cgroup_id(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/*
 * Is this task recorded, and under which sandbox? A task is tracked when its cgroup is a
 * sandbox cgroup, or when its tgid inherited a sandbox at fork. In host mode every task
 * but the monitor itself is recorded, with sandbox 0 unless it belongs to one.
 * Returns 1 and sets *sandbox when the task is to be recorded.
 *
 * One body; the callers differ only in how they read the task's cgroup id and tgid:
 * ac_tracked() by CO-RE reads (any task pointer), ac_tracked_btf() by BTF loads (a
 * trusted pointer: plain loads the verifier protects, no helper call per field), and
 * net.bpf.c's ac_net_tracked() by helpers for the current task (cgroup programs).
 */
static __always_inline int ac_tracked_ids(__u64 cg, __u32 tgid, __u64 *sandbox, __u32 *flags)
{
	__u64 *sb = bpf_map_lookup_elem(&ac_cgroups, &cg);

	if (!sb)
		sb = bpf_map_lookup_elem(&ac_tasks, &tgid);
	if (sb) {
		*sandbox = *sb;
		return 1;
	}
	struct ac_config *cfg = ac_config();
	if (cfg && cfg->host_mode && tgid != cfg->self_tgid) {
		*sandbox = 0;
		*flags |= AC_F_HOST_MODE;
		return 1;
	}
	return 0;
}

static __always_inline int ac_tracked(struct task_struct *task, __u64 *sandbox, __u32 *flags)
{
	return ac_tracked_ids(ac_task_cgroup_id(task), BPF_CORE_READ(task, tgid), sandbox, flags);
}

static __always_inline int ac_tracked_btf(struct task_struct *task, __u64 *sandbox, __u32 *flags)
{
	return ac_tracked_ids(task->cgroups->dfl_cgrp->kn->id, task->tgid, sandbox, flags);
}

/* What a record header says about its task, read one way or the other (below). */
struct ac_task_ids {
	__u64 cgroup_id;
	__u64 start_ns;
	__u32 pid, tid, ppid, uid, gid;
};

static __always_inline void ac_fill_header_ids(struct ac_event_header *hdr, const struct ac_task_ids *t,
					       __u16 type, __u32 size, __u64 sandbox, __u32 flags)
{
	hdr->type = type;
	hdr->abi_version = AC_ABI_VERSION;
	hdr->size = size;
	hdr->ktime_ns = bpf_ktime_get_boot_ns();
	hdr->cgroup_id = t->cgroup_id;
	hdr->sandbox_id = sandbox;
	hdr->start_ns = t->start_ns;
	hdr->pid = t->pid;
	hdr->tid = t->tid;
	hdr->ppid = t->ppid;
	hdr->uid = t->uid;
	hdr->gid = t->gid;
	hdr->flags = flags;
}

/* Any task pointer: CO-RE reads (one bpf_probe_read_kernel() per field). */
static __always_inline void ac_fill_header(struct ac_event_header *hdr, struct task_struct *task,
					   __u16 type, __u32 size, __u64 sandbox, __u32 flags)
{
	struct ac_task_ids t = {
		.cgroup_id = ac_task_cgroup_id(task),
		.start_ns = BPF_CORE_READ(task, group_leader, start_boottime),
		.pid = BPF_CORE_READ(task, tgid),
		.tid = BPF_CORE_READ(task, pid),
		.ppid = BPF_CORE_READ(task, real_parent, tgid),
		.uid = BPF_CORE_READ(task, cred, uid.val),
		.gid = BPF_CORE_READ(task, cred, gid.val),
	};
	ac_fill_header_ids(hdr, &t, type, size, sandbox, flags);
}

/*
 * A trusted BTF task pointer (tp_btf arguments, bpf_get_current_task_btf()): plain loads
 * the verifier turns into exception-table-protected loads, ~20 helper calls fewer per
 * file record than ac_fill_header().
 */
static __always_inline void ac_fill_header_btf(struct ac_event_header *hdr, struct task_struct *task,
					       __u16 type, __u32 size, __u64 sandbox, __u32 flags)
{
	const struct cred *cred = task->cred;
	struct ac_task_ids t = {
		.cgroup_id = task->cgroups->dfl_cgrp->kn->id,
		.start_ns = task->group_leader->start_boottime,
		.pid = task->tgid,
		.tid = task->pid,
		.ppid = task->real_parent->tgid,
		.uid = cred->uid.val,
		.gid = cred->gid.val,
	};
	ac_fill_header_ids(hdr, &t, type, size, sandbox, flags);
}

/*
 * What the ring keeps room for under a flood. A record of a class may be queued only
 * while the ring holds less than the class's share, so a loop of cheap actions cannot
 * fill it and lose the records that matter: file and failed-syscall records (what a
 * loop makes at the highest rate) stop at three quarters, network records at seven
 * eighths, and process records (exec, fork, exit: bounded by the sandbox's pids limit)
 * may use it all. What a share refuses is counted per sandbox (ac_shed) and reported
 * in-band; identical file failures are folded before they get here (file.bpf.h).
 */
enum ac_class { AC_CLASS_BULK = 0, AC_CLASS_NET = 1, AC_CLASS_PROCESS = 2 };

static __always_inline void ac_shed_inc(__u64 sandbox)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&ac_shed, &sandbox);

	ac_stat_inc(AC_STAT_SHED);
	if (v)
		__sync_fetch_and_add(v, 1);
	else if (bpf_map_update_elem(&ac_shed, &sandbox, &one, BPF_NOEXIST) != 0 &&
		 (v = bpf_map_lookup_elem(&ac_shed, &sandbox)))
		__sync_fetch_and_add(v, 1); /* another CPU created it first */
}

/*
 * Reserve a zeroed record: every byte that reaches user space, padding included, is
 * either written by us or zero. size must be a constant <= AC_ZERO_BYTES.
 */
static __always_inline void *ac_reserve_class(__u64 size, __u32 cls, __u64 sandbox)
{
	__u32 zero = 0;
	struct ac_zero_page *zp = bpf_map_lookup_elem(&ac_zero, &zero);
	void *rec;

	if (!zp)
		return 0;
	if (cls != AC_CLASS_PROCESS) {
		__u64 ring = bpf_ringbuf_query(&ac_events, BPF_RB_RING_SIZE);
		__u64 queued = bpf_ringbuf_query(&ac_events, BPF_RB_AVAIL_DATA);
		__u64 share = cls == AC_CLASS_NET ? ring - ring / 8 : ring - ring / 4;
		if (queued + size > share) {
			ac_shed_inc(sandbox);
			return 0;
		}
	}
	rec = bpf_ringbuf_reserve(&ac_events, size, 0);
	if (!rec) {
		ac_stat_inc(AC_STAT_RINGBUF_FULL);
		return 0;
	}
	bpf_probe_read_kernel(rec, size, zp->bytes);
	return rec;
}

static __always_inline void *ac_reserve(__u64 size)
{
	return ac_reserve_class(size, AC_CLASS_PROCESS, 0);
}

/*
 * Submit without waking the reader, except when this record makes the queued data cross
 * a multiple of wakeup_bytes: the reader drains in batches (and polls on a short timeout
 * for the tail) instead of waking per record. Waking on every record once past the
 * threshold (the obvious test) costs an IPI per record, a VM exit on virtual machines:
 * measured as 15% of all CPU at 100k records/s. Missing a wakeup is harmless: the reader
 * polls level-triggered and on a timeout.
 */
static __always_inline __u64 ac_wake_flags(void *rec)
{
	struct ac_config *cfg = ac_config();

	if (!cfg || !cfg->wakeup_bytes)
		return 0;
	__u64 thr = cfg->wakeup_bytes;
	__u64 after = bpf_ringbuf_query(&ac_events, BPF_RB_AVAIL_DATA);
	__u64 size = ((struct ac_event_header *)rec)->size + 8; /* + ring record header */
	__u64 before = after > size ? after - size : 0;
	return after / thr != before / thr ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void ac_submit(void *rec)
{
	__u64 flags = ac_wake_flags(rec);

	ac_stat_inc(AC_STAT_EVENTS);
	bpf_ringbuf_submit(rec, flags);
}

/*
 * A discarded record keeps its ring space until the reader walks past it, so discards
 * wake the reader at the same thresholds as records: a loop of folded failures must not
 * fill the ring with nothing and shed what follows.
 */
static __always_inline void ac_discard(void *rec)
{
	bpf_ringbuf_discard(rec, ac_wake_flags(rec));
}

#endif /* AGENTCAGE_COMMON_BPF_H */
