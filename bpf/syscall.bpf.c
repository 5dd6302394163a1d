// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Syscall exit: file actions (file.bpf.h), failed execs, every syscall of a tracked
 * process that fails with EACCES or EPERM (and forks failing with EAGAIN), accept results and network kill delivery
 * (net_exit.bpf.h).
 *
 * Hook choice on this kernel (6.18, 2 cores; numbers in tests/bench/README.md):
 *  - tp_btf/sys_exit (raw tracepoint, BTF-typed): attaches without tracefs, hands us the
 *    saved user pt_regs and the return value directly, costs one program call per
 *    syscall. Chosen.
 *  - classic tracepoint/syscalls/sys_exit_openat etc.: not measured here, because it needs
 *    tracefs for the event ids and tracefs is not even mounted on these machines (a
 *    monitor should not have to mount it); it would also take ~30 programs, one per
 *    syscall, each hit building a perf trace record before our program runs. Its one
 *    advantage, no call at all for other syscalls, is small next to the cost below.
 *  - fexit/LSM: refused here (EPERM).
 * Any syscall tracepoint user sets SYSCALL_WORK_SYSCALL_TRACEPOINT on every task, so every
 * syscall on the host takes the slow exit path either way; measured as the "untracked"
 * overhead in the benchmarks. What we control is the work after that. Hence ONE program
 * on sys_exit (each extra attached program is another call on every syscall of every
 * process) whose first instructions reject everything that is neither a file syscall
 * (one table load) nor an EACCES/EPERM failure, before any map lookup. Only then is the
 * task's tracked state looked up. No sys_enter program: the argument registers are still
 * in the saved pt_regs at exit, so no per-thread map is needed between enter and exit.
 *
 * x86_64 only: syscall numbers are the native 64-bit ABI (32-bit ABIs are denied by the
 * sandbox's seccomp profile; in host mode their numbers would be misread, so compat
 * tasks are skipped).
 */
/*
 * BTF-typed path walk on this hot path (see path.bpf.h), where the kernel has the
 * bpf_rdonly_cast kfunc (6.2+). syscall_compat.bpf.c builds the same program with CO-RE
 * reads for older kernels; the loader keeps exactly one of the two.
 */
#ifndef AC_SYSCALL_PROG
#define AC_PATH_BTF 1
#define AC_SYSCALL_PROG tp_btf__sys_exit
#endif
#include "common.bpf.h"
#include "file.bpf.h"
#include "net_exit.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AC_EPERM 1
#define AC_EAGAIN 11
#define AC_EACCES 13
#define AC_PF_EXITING 0x00000004 /* task->flags: getting shut down */
/* The process-creating calls: EAGAIN from them is the pids limit (or RLIMIT_NPROC). */
#define AC_NR_clone 56
#define AC_NR_fork 57
#define AC_NR_vfork 58
#define AC_NR_clone3 435
#define AC_TS_COMPAT 0x0002 /* thread_info.status: the task is in a 32-bit syscall */

/* a[8]: the six argument registers, then two zeroes (the value of an absent field). */
static __always_inline void ac_syscall_args(struct pt_regs *regs, __u64 *a)
{
	a[6] = 0;
	a[7] = 0;
	a[0] = regs->di;
	a[1] = regs->si;
	a[2] = regs->dx;
	a[3] = regs->r10;
	a[4] = regs->r8;
	a[5] = regs->r9;
}

static __always_inline void ac_emit_denied(struct task_struct *task, long nr, long ret, const __u64 *a,
					   __u64 sandbox, __u32 flags)
{
	struct ac_syscall_event *ev = ac_reserve_class(sizeof(*ev), AC_CLASS_BULK, sandbox);
	if (!ev)
		return;
	ev->nr = nr;
	ev->result = ret;
	for (int i = 0; i < 6; i++)
		ev->args[i] = a[i];
	ac_fill_header_btf(&ev->hdr, task, AC_EV_SYSCALL, sizeof(*ev), sandbox, flags);
	ac_submit(ev);
}

/*
 * execve/execveat returned an error: the caller keeps its image. Successful execs are
 * reported by sched_process_exec (process.bpf.c). Filename and the first
 * AC_EXEC_FAILED_ARGS args are read from the caller's memory, which is still intact.
 */
static __always_inline void ac_emit_exec_failed(struct task_struct *task, long nr, long ret, const __u64 *a,
						__u64 sandbox, __u32 flags)
{
	/* A kill is recorded like the process records it ends: from the ring's reserve. */
	struct ac_exec_failed_event *ev =
		ac_reserve_class(sizeof(*ev), (flags & AC_F_KILLED) ? AC_CLASS_PROCESS : AC_CLASS_BULK, sandbox);
	if (!ev)
		return;
	__u64 filename = nr == AC_NR_execve ? a[0] : a[1];
	const char *const *argv = (const char *const *)(nr == AC_NR_execve ? a[1] : a[2]);

	ev->result = ret;
	ev->filename_len = ac_user_str(ev->filename, sizeof(ev->filename), filename, &flags,
				       AC_F_FILENAME_TRUNCATED);
	/* Each arg gets at most half the buffer, so a masked offset plus its bound stays inside. */
	__u32 off = 0, argc = 0;
	for (int i = 0; i < AC_EXEC_FAILED_ARGS && argv; i++) {
		const char *arg = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		if (off >= AC_ARGV_MAX / 2) {
			flags |= AC_F_ARGV_TRUNCATED;
			ac_stat_inc(AC_STAT_TRUNCATED);
			break;
		}
		long n = bpf_probe_read_user_str(ev->argv + (off & (AC_ARGV_MAX / 2 - 1)), AC_ARGV_MAX / 2, arg);
		if (n <= 0) {
			flags |= AC_F_READ_FAULT;
			ac_stat_inc(AC_STAT_READ_FAULT);
			break;
		}
		off += n;
		argc++;
	}
	ev->argv_len = off;
	ev->argc = argc;
	/*
	 * A relative name ("./evil.sh") means nothing without the cwd of this moment: the
	 * caller is usually a forked child that exits right after, so userspace cannot ask
	 * /proc later, and the cwd recorded at its exec is its parent's, before any `cd`.
	 */
	ev->cwd_len = 0;
	if (ev->filename_len > 0 && ev->filename[0] != '/') {
		int truncated = 0;
		ev->cwd_len = ac_resolve_path(&task->fs->pwd, task, ev->cwd, &truncated);
		if (truncated)
			ev->cwd_len = 0; /* a partial cwd would name another directory */
	}
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ac_fill_header_btf(&ev->hdr, task, AC_EV_EXEC_FAILED, sizeof(*ev), sandbox, flags);
	ac_submit(ev);
}

/*
 * actions.exec: kill. The caller of the refused exec is usually a forked child (a shell's,
 * a server's child_process.spawn): killing only it would leave the process that chose to
 * run the image going. So its ancestors in the same sandbox are marked in ac_exec_doomed
 * (net_exit.bpf.h), before the child has even exited: each gets SIGKILL on the way out of its current
 * syscall (a parent waiting for the child returns from wait4 into death) and so never
 * runs another user-space instruction after a syscall. The sandbox's init (pid
 * namespace) is one of them, and with it the kernel ends the rest of the sandbox.
 * Returns 0 when the caller itself was signalled.
 */
static __always_inline int ac_exec_kill(struct task_struct *task, __u64 sandbox)
{
	int err = bpf_send_signal(SIGKILL);
	struct task_struct *p = BPF_CORE_READ(task, real_parent);
	for (int i = 0; i < 16 && p; i++) {
		__u64 sb = 0;
		__u32 fl = 0;
		if (!ac_tracked(p, &sb, &fl) || sb != sandbox)
			break;
		/* Past its exit hook a mark would never be dropped: it is dying anyway. */
		if (!(BPF_CORE_READ(p, flags) & AC_PF_EXITING)) {
			__u32 tgid = BPF_CORE_READ(p, tgid);
			__u64 start = BPF_CORE_READ(p, group_leader, start_boottime);
			if (bpf_map_update_elem(&ac_exec_doomed, &tgid, &start, BPF_NOEXIST) == 0)
				__sync_fetch_and_add(&ac_exec_doomed_pending, 1);
			else if (!bpf_map_lookup_elem(&ac_exec_doomed, &tgid))
				ac_stat_inc(AC_STAT_EXEC_KILL_FAILED);
		}
		p = BPF_CORE_READ(p, real_parent);
	}
	return err;
}

/* mode: audit: is nr one the sandbox's seccomp profile would refuse? */
static __always_inline int ac_audited(__u64 sandbox, long nr)
{
	__u32 *sf = bpf_map_lookup_elem(&ac_sandbox_flags, &sandbox);
	if (!sf || !(*sf & AC_SB_AUDIT_SYSCALLS) || nr < 0 || nr >= AC_SYSCALL_SET_BITS)
		return 0;
	struct ac_syscall_set *set = bpf_map_lookup_elem(&ac_audit_syscalls, &sandbox);
	if (!set)
		return 0;
	return (set->bits[(nr >> 6) & (AC_SYSCALL_SET_BITS / 64 - 1)] >> (nr & 63)) & 1;
}

/*
 * syscall_exit_to_user_mode -> syscall_exit_work -> trace_sys_exit(regs, ret)
 * Runs in the task's context after the syscall finished: the result is final and, for a
 * successful open or accept, the fd is installed.
 *
 * The only program on sys_exit: the network hooks' kill delivery and accept results
 * (net_exit.bpf.h) ride on this call rather than a second program on every syscall.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(AC_SYSCALL_PROG, struct pt_regs *regs, long ret)
{
	if (ac_net_exit_kill() || ac_exec_doomed_exit_kill())
		return 0;

	long nr = regs->orig_ax;
	/*
	 * A fork refused by the sandbox's pids limit is a denial too; the compare on ret first
	 * keeps the call-number checks off every successful syscall. The compares use a copy
	 * of nr the compiler cannot see through: merged with ac_file_desc's bound check into
	 * one range test, they left older verifiers (6.1) without a bound on the table index.
	 */
	long fnr = nr;
	asm volatile("" : "+r"(fnr));
	int denied = ret == -AC_EACCES || ret == -AC_EPERM ||
		     (ret == -AC_EAGAIN && (fnr == AC_NR_clone || fnr == AC_NR_clone3 || fnr == AC_NR_fork ||
					     fnr == AC_NR_vfork));
	__u32 fdesc = ac_file_desc(nr);
	int failed_exec = ret < 0 && (nr == AC_NR_execve || nr == AC_NR_execveat);
	int accepted = ac_is_accept(nr, ret);

	/*
	 * The hot path for everything else on the host: one array load (inlined, no helper
	 * call) while no sandbox is in audit mode, and nothing more.
	 */
	int audit_only = 0;
	if (!denied && !fdesc && !failed_exec && !accepted) {
		struct ac_config *cfg = ac_config();
		if (!cfg || !cfg->audit_sandboxes)
			return 0;
		audit_only = 1;
	}

	struct task_struct *task = bpf_get_current_task_btf();
	__u64 sandbox = 0;
	__u32 flags = 0;
	if (!ac_tracked_btf(task, &sandbox, &flags))
		return 0;
	if (BPF_CORE_READ(task, thread_info.status) & AC_TS_COMPAT)
		return 0;

	if (accepted) {
		ac_net_accepted(task, ret, sandbox, flags);
		return 0;
	}
	__u64 a[8];
	ac_syscall_args(regs, a);
	if (audit_only) {
		if (sandbox && ac_audited(sandbox, nr))
			ac_emit_denied(task, nr, ret, a, sandbox, flags | AC_F_AUDIT);
		return 0;
	}
	if (denied)
		ac_emit_denied(task, nr, ret, a, sandbox, flags);
	if (fdesc)
		ac_file_exit(task, nr, fdesc, a, ret, sandbox, flags);
	else if (failed_exec) {
		/*
		 * Killed before the record is written: a full ring loses the record (counted),
		 * never the kill. The signal is pending when this syscall returns, so the caller
		 * never runs another instruction (SIGKILL cannot be caught).
		 */
		if (ret == -AC_EACCES && sandbox) {
			__u32 *sf = bpf_map_lookup_elem(&ac_sandbox_flags, &sandbox);
			if (sf && (*sf & AC_SB_EXEC_KILL)) {
				if (ac_exec_kill(task, sandbox) == 0)
					flags |= AC_F_KILLED;
				else
					ac_stat_inc(AC_STAT_EXEC_KILL_FAILED);
			}
		}
		ac_emit_exec_failed(task, nr, ret, a, sandbox, flags);
	}
	return 0;
}
