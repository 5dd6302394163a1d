// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Process lifecycle: fork, exec, exit. BTF tracepoints (tp_btf) give typed access to the
 * task and binprm and work on every BTF kernel; fentry/LSM are not needed here.
 */
#include "common.bpf.h"
#include "path.bpf.h"
#include "net_exit.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * kernel_clone -> copy_process -> wake_up_new_task ... trace_sched_process_fork(parent, child)
 * Fires once the child is fully set up (its cgroup assigned by cgroup_post_fork), in the
 * parent's context. A child born straight into a sandbox cgroup (clone3 CLONE_INTO_CGROUP)
 * is caught here by its own cgroup; a child of a tracked parent inherits the sandbox so
 * leaving the cgroup later does not leave the record.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp__sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u64 sandbox = 0;
	__u32 flags = 0;
	__u32 child_tgid = BPF_CORE_READ(child, tgid);

	/* Threads share the process: only a new thread group is a new process. */
	if (BPF_CORE_READ(child, pid) != child_tgid)
		return 0;
	if (!ac_tracked_btf(child, &sandbox, &flags) && !ac_tracked_btf(parent, &sandbox, &flags))
		return 0;
	if (sandbox && bpf_map_update_elem(&ac_tasks, &child_tgid, &sandbox, BPF_ANY))
		ac_stat_inc(AC_STAT_TASK_MAP_FULL);

	struct ac_fork_event *ev = ac_reserve(sizeof(*ev));
	if (!ev)
		return 0;
	ac_fill_header_btf(&ev->hdr, child, AC_EV_FORK, sizeof(*ev), sandbox, flags);
	ev->child_start_ns = BPF_CORE_READ(child, start_boottime);
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), BPF_CORE_READ(child, comm));
	ac_submit(ev);
	return 0;
}

/*
 * execve -> bprm_execve -> exec_binprm -> trace_sched_process_exec(current, old_pid, bprm)
 * Fires after the point of no return: the new image is mapped, argv is in the new mm,
 * and current is the task that will run it. Only successful execs reach here.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp__sched_process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 sandbox = 0;
	__u32 flags = 0;

	if (!ac_tracked_btf(task, &sandbox, &flags))
		return 0;

	struct ac_exec_event *ev = ac_reserve(sizeof(*ev));
	if (!ev)
		return 0;

	long n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	if (n < 0) {
		flags |= AC_F_READ_FAULT;
		ac_stat_inc(AC_STAT_READ_FAULT);
		n = 0;
	} else if (n == sizeof(ev->filename)) {
		flags |= AC_F_FILENAME_TRUNCATED;
		ac_stat_inc(AC_STAT_TRUNCATED);
	}
	ev->filename_len = n;

	unsigned long arg_start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > AC_ARGV_MAX) {
		len = AC_ARGV_MAX;
		flags |= AC_F_ARGV_TRUNCATED;
		ac_stat_inc(AC_STAT_TRUNCATED);
	}
	if (len && bpf_probe_read_user(ev->argv, len, (void *)arg_start)) {
		flags |= AC_F_READ_FAULT;
		ac_stat_inc(AC_STAT_READ_FAULT);
		len = 0;
	}
	ev->argv_len = len;
	ev->argc = BPF_CORE_READ(bprm, argc);

	/*
	 * The image really mapped: bprm->file, walked in the kernel. For a script,
	 * load_script() has replaced bprm->file by the interpreter's file, and bprm->interp
	 * holds the interpreter as the #! line names it; filename stays the script.
	 */
	int truncated = 0;
	ev->exe_len = ac_resolve_path(&bprm->file->f_path, task, ev->exe, &truncated);
	ev->cwd_len = ac_resolve_path(&task->fs->pwd, task, ev->cwd, &truncated);
	if (truncated) {
		flags |= AC_F_EXE_TRUNCATED;
		ac_stat_inc(AC_STAT_TRUNCATED);
	}
	const char *interp = BPF_CORE_READ(bprm, interp);
	if (interp != BPF_CORE_READ(bprm, filename)) {
		n = bpf_probe_read_kernel_str(ev->interp, sizeof(ev->interp), interp);
		ev->interp_len = n > 0 ? n : 0;
	}
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ac_fill_header_btf(&ev->hdr, task, AC_EV_EXEC, sizeof(*ev), sandbox, flags);
	ac_submit(ev);
	return 0;
}

/*
 * do_exit -> ... trace_sched_process_exit(task). Runs once per exiting thread; the
 * process is gone when the last thread exits (signal->live reaches 0, decremented in
 * do_exit before this tracepoint). task->exit_code holds the wait status by then.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp__sched_process_exit, struct task_struct *task)
{
	__u64 sandbox = 0;
	__u32 flags = 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);

	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	/* Whether or not it is still tracked: a mark must not outlive its process. */
	ac_exec_doomed_forget(tgid);
	if (!ac_tracked_btf(task, &sandbox, &flags))
		return 0;
	bpf_map_delete_elem(&ac_tasks, &tgid);

	struct ac_exit_event *ev = ac_reserve(sizeof(*ev));
	if (!ev)
		return 0;
	ac_fill_header_btf(&ev->hdr, task, AC_EV_EXIT, sizeof(*ev), sandbox, flags);
	ev->exit_code = BPF_CORE_READ(task, exit_code);
	/*
	 * mark_oom_victim() sets signal->oom_mm on the process the OOM killer chose (a memory
	 * cgroup over its limit, or the host out of memory) and it stays until the signal
	 * struct is freed, after this tracepoint: the kernel's own account of why the process
	 * died, where a SIGKILL alone could have come from anyone.
	 */
	ev->exit_flags = BPF_CORE_READ(task, signal, oom_mm) ? AC_EXIT_OOM_VICTIM : 0;
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), BPF_CORE_READ(task, comm));
	ac_submit(ev);
	return 0;
}
