/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The network half of the one sys_exit program (syscall.bpf.c): kill delivery for the
 * cgroup hooks' kill actions, and accept/accept4 results. It used to be a second
 * tp_btf/sys_exit program in net.bpf.c; every program attached there is one more call on
 * every syscall of every process on the host, so both jobs now ride on the file/denial
 * program's single call, after a load and a compare each.
 */
#ifndef AGENTCAGE_NET_EXIT_BPF_H
#define AGENTCAGE_NET_EXIT_BPF_H

#include "common.bpf.h"
#include <bpf/bpf_endian.h>

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_LISTEN 10
#define SIGKILL 9

#if defined(__TARGET_ARCH_x86)
#define AC_NR_ACCEPT 43
#define AC_NR_ACCEPT4 288
#elif defined(__TARGET_ARCH_arm64)
#define AC_NR_ACCEPT 202
#define AC_NR_ACCEPT4 242
#endif

/* Threads to SIGKILL when their current syscall returns (kill action). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} ac_net_kill SEC(".maps") __weak;

/*
 * Entries in ac_net_kill, so the sys_exit program skips the lookup while it is zero (all
 * but a few syscalls on the host). __weak like the maps: every object that includes this
 * sees the same variable once `bpftool gen object` links them.
 */
__u32 ac_net_kills_pending __weak = 0;

/* Fill address/port of one end of an inet socket; returns the family. */
static __always_inline __u16 ac_sk_end(const struct sock *sk, int remote, __u8 *addr, __u16 *port, __u32 *flags)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == AF_INET) {
		__u32 ip = remote ? BPF_CORE_READ(sk, __sk_common.skc_daddr) : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(&addr[12], &ip, 4);
		*flags |= AC_NET_F_V4;
	} else if (family == AF_INET6) {
		if (remote)
			BPF_CORE_READ_INTO(addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		else
			BPF_CORE_READ_INTO(addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
	}
	*port = remote ? bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)) : BPF_CORE_READ(sk, __sk_common.skc_num);
	return family;
}

/*
 * A hook that decided "kill" marked this thread (bpf_send_signal() is not available to
 * cgroup programs on older kernels): on the way out of that same syscall it gets SIGKILL
 * before it runs another user-space instruction (the EPERM it got is never acted on).
 * Returns 1 when the thread was killed.
 */
static __always_inline int ac_net_exit_kill(void)
{
	if (!ac_net_kills_pending)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&ac_net_kill, &tid))
		return 0;
	if (bpf_map_delete_elem(&ac_net_kill, &tid) == 0)
		__sync_fetch_and_add(&ac_net_kills_pending, (__u32)-1);
	if (bpf_send_signal(SIGKILL))
		ac_stat_inc(AC_STAT_NET_KILL_FAILED);
	return 1;
}

/*
 * actions.exec: kill marks the ancestors of a refused exec's caller here: tgid -> the
 * process's start time (group_leader->start_boottime), so a mark can only ever kill that
 * process, never one that later reuses the pid. Each dies on the way out of its current
 * syscall; a mark whose process exits otherwise is dropped at its exit.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} ac_exec_doomed SEC(".maps") __weak;

__u32 ac_exec_doomed_pending __weak = 0;

static __always_inline int ac_exec_doomed_exit_kill(void)
{
	if (!ac_exec_doomed_pending)
		return 0;
	__u32 tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	__u64 *start = bpf_map_lookup_elem(&ac_exec_doomed, &tgid);
	if (!start)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int same = *start == BPF_CORE_READ(task, group_leader, start_boottime);
	if (bpf_map_delete_elem(&ac_exec_doomed, &tgid) == 0)
		__sync_fetch_and_add(&ac_exec_doomed_pending, (__u32)-1);
	if (!same)
		return 0;  /* stale: another process with that pid */
	if (bpf_send_signal(SIGKILL))
		ac_stat_inc(AC_STAT_EXEC_KILL_FAILED);
	return 1;
}

/* A marked process that exits without passing a syscall exit (killed while in user space). */
static __always_inline void ac_exec_doomed_forget(__u32 tgid)
{
	if (ac_exec_doomed_pending && bpf_map_delete_elem(&ac_exec_doomed, &tgid) == 0)
		__sync_fetch_and_add(&ac_exec_doomed_pending, (__u32)-1);
}

static __always_inline int ac_is_accept(long nr, long ret)
{
	return ret >= 0 && (nr == AC_NR_ACCEPT || nr == AC_NR_ACCEPT4);
}

/* accept/accept4 returned fd (a tracked task): report the connection's peer and local end. */
static __always_inline void ac_net_accepted(struct task_struct *task, long fd, __u64 sandbox, __u32 hflags)
{
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]) || !f)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;

	struct ac_net_event *ev = ac_reserve_class(sizeof(*ev), AC_CLASS_NET, sandbox);
	if (!ev)
		return;
	ac_fill_header_btf(&ev->hdr, task, AC_EV_NET, sizeof(*ev), sandbox, hflags);
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), task->comm);
	ev->op = AC_NET_ACCEPT;
	ev->sock_type = BPF_CORE_READ(sock, type);
	ev->protocol = BPF_CORE_READ(sk, sk_protocol);
	__u32 nflags = 0, lflags = 0;
	ev->family = ac_sk_end(sk, 1, ev->addr, &ev->port, &nflags);
	ac_sk_end(sk, 0, ev->local_addr, &ev->local_port, &lflags);
	ev->net_flags = nflags;
	ac_submit(ev);
}

#endif /* AGENTCAGE_NET_EXIT_BPF_H */
