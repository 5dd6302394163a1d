// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * BPF LSM: deny by inode, where the kernel runs BPF LSM programs ("bpf" in the LSM list).
 * A stronger layer over Landlock: Landlock allows by path hierarchy and cannot carve one
 * file out of an allowed tree; these hooks deny a file by *inode*, so every name of it
 * (hard links, bind mounts, /proc/PID/root/..., renames) is caught.
 *
 * User space switches these programs off (bpf_program__set_autoload(false)) where BPF
 * LSM is unavailable, so nothing else here may depend on them.
 *
 * Both programs are sleepable (lsm.s/) because bpf_d_path() is allowed only from
 * sleepable LSM hooks; the maps they touch (hash, array, per-CPU array, ring buffer) are
 * all usable from sleepable programs.
 */
#include "common.bpf.h"

#define AC_EACCES 13

/* (sandbox, dev, ino) -> rule. Written by user space before the sandbox's first exec. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ac_inode_key);
	__type(value, struct ac_inode_rule);
} ac_lsm_inodes SEC(".maps");

/* The self-test flag (struct ac_lsm_probe in abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ac_lsm_probe);
} ac_lsm_probe SEC(".maps");

/*
 * The decision, shared by both hooks: is `file` denied (`want` bits) for the current
 * task's sandbox? If so, report and return -EACCES. Untracked tasks cost one or two hash
 * lookups (ac_tracked) and nothing else.
 */
static __always_inline int ac_lsm_check(struct file *file, __u32 hook, __u32 want)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ac_inode_key key = {};
	struct ac_inode_rule *rule;
	__u64 sandbox = 0;
	__u32 flags = 0;

	if (!ac_tracked(task, &sandbox, &flags))
		return 0;
	key.sandbox = sandbox;
	key.ino = BPF_CORE_READ(file, f_inode, i_ino);
	key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	rule = bpf_map_lookup_elem(&ac_lsm_inodes, &key);
	if (!rule || !(rule->deny & want))
		return 0;

	/* Deny even if the record cannot be queued: the loss is counted (ringbuf_full, shed). */
	struct ac_lsm_deny_event *ev = ac_reserve_class(sizeof(*ev), AC_CLASS_BULK, sandbox);
	if (!ev)
		return -AC_EACCES;
	ev->hook = hook;
	ev->rule_id = rule->rule_id;
	ev->ino = key.ino;
	ev->dev = key.dev;
	ev->f_mode = BPF_CORE_READ(file, f_mode);
	ev->f_flags = BPF_CORE_READ(file, f_flags);
	ev->ret = -AC_EACCES;
	/* f_path is const in newer kernels; bpf_d_path() only reads it. */
	long n = bpf_d_path((struct path *)&file->f_path, ev->path, sizeof(ev->path));
	if (n <= 0) {
		/* Path too long or not resolvable: keep at least the file's own name. */
		flags |= AC_F_PATH_TRUNCATED;
		ac_stat_inc(AC_STAT_TRUNCATED);
		n = bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), BPF_CORE_READ(file, f_path.dentry, d_name.name));
		if (n < 0) {
			flags |= AC_F_READ_FAULT;
			ac_stat_inc(AC_STAT_READ_FAULT);
			n = 0;
		}
	}
	ev->path_len = n;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ac_fill_header(&ev->hdr, task, AC_EV_LSM_DENY, sizeof(*ev), sandbox, flags);
	ac_submit(ev);
	return -AC_EACCES;
}

/*
 * openat/open_by_handle/execve/uselib/... -> do_dentry_open -> security_file_open(file)
 * Every open of a file reaches here after the path walk, with the struct file's final
 * inode: whatever name the process used, the inode is the one it will read. Denying here
 * fails the open(2) with EACCES before a file descriptor exists. Exec opens the image
 * through the same path (FMODE_EXEC), so a deny-open rule also stops exec.
 */
SEC("lsm.s/file_open")
int BPF_PROG(lsm__file_open, struct file *file, int ret)
{
	__u32 zero = 0;
	struct ac_lsm_probe *probe = bpf_map_lookup_elem(&ac_lsm_probe, &zero);

	/* One array lookup per open: proves to user space that this hook really runs. */
	if (probe && probe->tgid && probe->tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		probe->seen = 1;
	if (ret)
		return ret; /* an earlier BPF LSM program already denied */
	return ac_lsm_check(file, AC_LSM_FILE_OPEN, AC_LSM_DENY_OPEN);
}

/*
 * execve -> bprm_execve -> exec_binprm -> search_binary_handler
 *        -> security_bprm_check(bprm)
 * Called once per image in the exec chain (the script, then its interpreter), before the
 * point of no return: denying fails execve(2) with EACCES and the caller keeps running its
 * old image. bprm->file is the opened image, so the inode is exact.
 */
SEC("lsm.s/bprm_check_security")
int BPF_PROG(lsm__bprm_check_security, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return ac_lsm_check(bprm->file, AC_LSM_BPRM_CHECK, AC_LSM_DENY_EXEC);
}
