/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * File actions, recorded at syscall exit (called from the one sys_exit program in
 * syscall.bpf.c; see there why there is only one). Exit is the place where the result is
 * known and, for a successful open, the new fd already points at the struct file the
 * kernel opened: we resolve that file's real path (path.bpf.h) instead of trusting the
 * user's string. Failed actions, and path-based actions that create no file, record the
 * string the process passed, read from its memory at exit. That string is the caller's
 * claim, not what the kernel resolved (another thread may rewrite the buffer): records
 * say so with path_resolved = false. BPF LSM inode hooks close that gap where available.
 *
 * x86_64 syscall arguments live in the saved user registers (di, si, dx, r10, r8, r9),
 * which syscall exit still holds: no sys_enter program and no per-thread map needed.
 */
#ifndef AGENTCAGE_FILE_BPF_H
#define AGENTCAGE_FILE_BPF_H

#include "common.bpf.h"
#include "path.bpf.h"

#define AC_AT_FDCWD -100
#define AC_AT_REMOVEDIR 0x200
#define AC_O_CREAT_WRONLY_TRUNC (0100 | 01 | 01000)

/* x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl; stable ABI). */
enum {
	AC_NR_truncate = 76, AC_NR_ftruncate = 77, AC_NR_rename = 82, AC_NR_mkdir = 83,
	AC_NR_rmdir = 84, AC_NR_creat = 85, AC_NR_link = 86, AC_NR_unlink = 87, AC_NR_symlink = 88,
	AC_NR_chmod = 90, AC_NR_fchmod = 91, AC_NR_chown = 92, AC_NR_fchown = 93, AC_NR_lchown = 94,
	AC_NR_setxattr = 188, AC_NR_lsetxattr = 189, AC_NR_fsetxattr = 190,
	AC_NR_open = 2, AC_NR_openat = 257, AC_NR_mkdirat = 258, AC_NR_fchownat = 260,
	AC_NR_unlinkat = 263, AC_NR_renameat = 264, AC_NR_linkat = 265, AC_NR_symlinkat = 266,
	AC_NR_fchmodat = 268, AC_NR_renameat2 = 316, AC_NR_openat2 = 437, AC_NR_fchmodat2 = 452,
	AC_NR_setxattrat = 463, AC_NR_execve = 59, AC_NR_execveat = 322,
};

/* What the syscall does to files (enum ac_file_op), 0 for none. Checked before anything else. */
static __always_inline __u32 ac_file_op_of(long nr)
{
	switch (nr) {
	case AC_NR_open: case AC_NR_openat: case AC_NR_openat2: return AC_FOP_OPEN;
	case AC_NR_creat: return AC_FOP_CREAT;
	case AC_NR_unlink: case AC_NR_unlinkat: return AC_FOP_UNLINK; /* unlinkat may be rmdir */
	case AC_NR_rmdir: return AC_FOP_RMDIR;
	case AC_NR_rename: case AC_NR_renameat: case AC_NR_renameat2: return AC_FOP_RENAME;
	case AC_NR_mkdir: case AC_NR_mkdirat: return AC_FOP_MKDIR;
	case AC_NR_link: case AC_NR_linkat: return AC_FOP_LINK;
	case AC_NR_symlink: case AC_NR_symlinkat: return AC_FOP_SYMLINK;
	case AC_NR_chmod: case AC_NR_fchmod: case AC_NR_fchmodat: case AC_NR_fchmodat2: return AC_FOP_CHMOD;
	case AC_NR_chown: case AC_NR_fchown: case AC_NR_lchown: case AC_NR_fchownat: return AC_FOP_CHOWN;
	case AC_NR_truncate: case AC_NR_ftruncate: return AC_FOP_TRUNCATE;
	case AC_NR_setxattr: case AC_NR_lsetxattr: case AC_NR_fsetxattr: case AC_NR_setxattrat: return AC_FOP_SETXATTR;
	}
	return 0;
}

static __always_inline int ac_is_two_path(__u32 op)
{
	return op == AC_FOP_RENAME || op == AC_FOP_LINK || op == AC_FOP_SYMLINK || op == AC_FOP_SETXATTR;
}

/* Copies a user string into a fixed field; returns bytes incl. NUL, flags faults/truncation. */
static __always_inline __u32 ac_user_str(char *dst, __u32 cap, __u64 uptr, __u32 *flags, __u32 trunc_flag)
{
	long n = bpf_probe_read_user_str(dst, cap, (const void *)uptr);
	if (n < 0) {
		*flags |= AC_F_READ_FAULT;
		ac_stat_inc(AC_STAT_READ_FAULT);
		return 0;
	}
	if (n == cap) {
		*flags |= trunc_flag;
		ac_stat_inc(AC_STAT_TRUNCATED);
	}
	return n;
}

/* Resolves the struct file behind fd into f->path; returns 0 when there is none. */
static __always_inline int ac_file_path_from_fd(struct ac_file_event *f, struct task_struct *task, long fd,
						__u32 *flags)
{
	struct file *file = ac_fd_file(task, fd);
	int truncated = 0;

	if (!file)
		return 0;
	f->path_len = ac_resolve_path(&file->f_path, task, f->path, &truncated);
	if (!f->path_len)
		return 0;
	*flags |= AC_F_PATH_RESOLVED;
	if (truncated) {
		*flags |= AC_F_PATH_TRUNCATED;
		ac_stat_inc(AC_STAT_TRUNCATED);
	}
	return 1;
}

/*
 * Fills and submits the record `f` (reserved by ac_file_exit with its layout's size;
 * path2 is NULL for the one-path layout) for file op `op` of syscall `nr` with argument
 * registers a[0..5] and result `ret`.
 */
static __always_inline void ac_file_fill(struct ac_file_event *f, char *path2, __u16 type, __u32 size,
					 struct task_struct *task, long nr, __u32 op, const __u64 *a, long ret,
					 __u64 sandbox, __u32 flags)
{
	f->op = op;
	f->nr = nr;
	f->result = ret;
	f->dirfd = AC_AT_FDCWD;
	f->owner_uid = (__u32)-1;
	f->owner_gid = (__u32)-1;

	__u64 path = 0, path2_ptr = 0; /* user pointers, when the path comes from the caller */
	long fd = -1;                  /* fd-based calls: resolve from the fd instead */

	switch (nr) {
	case AC_NR_open:
		path = a[0]; f->open_flags = a[1]; f->mode = a[2];
		break;
	case AC_NR_openat:
		f->dirfd = a[0]; path = a[1]; f->open_flags = a[2]; f->mode = a[3];
		break;
	case AC_NR_openat2: {
		struct open_how how = {};
		f->dirfd = a[0]; path = a[1];
		if (bpf_probe_read_user(&how, sizeof(how), (const void *)a[2]) == 0) {
			f->open_flags = how.flags;
			f->mode = how.mode;
		}
		break;
	}
	case AC_NR_creat:
		path = a[0]; f->mode = a[1]; f->open_flags = AC_O_CREAT_WRONLY_TRUNC;
		break;
	case AC_NR_unlink: case AC_NR_rmdir:
		path = a[0];
		break;
	case AC_NR_unlinkat:
		f->dirfd = a[0]; path = a[1]; f->open_flags = a[2];
		if (a[2] & AC_AT_REMOVEDIR)
			f->op = AC_FOP_RMDIR;
		break;
	case AC_NR_rename: case AC_NR_link:
		path = a[0]; path2_ptr = a[1];
		break;
	case AC_NR_renameat: case AC_NR_renameat2: case AC_NR_linkat:
		/* newdirfd (a[2]) is not recorded: the record has room for one dirfd. */
		f->dirfd = a[0]; path = a[1]; path2_ptr = a[3];
		if (nr != AC_NR_renameat)
			f->open_flags = a[4];
		break;
	case AC_NR_mkdir:
		path = a[0]; f->mode = a[1];
		break;
	case AC_NR_mkdirat:
		f->dirfd = a[0]; path = a[1]; f->mode = a[2];
		break;
	case AC_NR_symlink:
		path2_ptr = a[0]; path = a[1];
		break;
	case AC_NR_symlinkat:
		path2_ptr = a[0]; f->dirfd = a[1]; path = a[2];
		break;
	case AC_NR_chmod:
		path = a[0]; f->mode = a[1];
		break;
	case AC_NR_fchmod:
		fd = a[0]; f->mode = a[1];
		break;
	case AC_NR_fchmodat: case AC_NR_fchmodat2:
		f->dirfd = a[0]; path = a[1]; f->mode = a[2];
		break;
	case AC_NR_chown: case AC_NR_lchown:
		path = a[0]; f->owner_uid = a[1]; f->owner_gid = a[2];
		break;
	case AC_NR_fchown:
		fd = a[0]; f->owner_uid = a[1]; f->owner_gid = a[2];
		break;
	case AC_NR_fchownat:
		f->dirfd = a[0]; path = a[1]; f->owner_uid = a[2]; f->owner_gid = a[3]; f->open_flags = a[4];
		break;
	case AC_NR_truncate:
		path = a[0];
		break;
	case AC_NR_ftruncate:
		fd = a[0];
		break;
	case AC_NR_setxattr: case AC_NR_lsetxattr:
		path = a[0]; path2_ptr = a[1];
		break;
	case AC_NR_fsetxattr:
		fd = a[0]; path2_ptr = a[1];
		break;
	case AC_NR_setxattrat:
		f->dirfd = a[0]; path = a[1]; path2_ptr = a[3];
		break;
	}

	/* A successful open: the fd it returned names the file the kernel really opened. */
	if (fd >= 0) {
		f->dirfd = fd;
	} else if ((op == AC_FOP_OPEN || op == AC_FOP_CREAT) && ret >= 0) {
		fd = ret; /* dirfd keeps the caller's value; result carries the fd */
	}
	if (fd >= 0 && !ac_file_path_from_fd(f, task, fd, &flags) && path == 0) {
		flags |= AC_F_READ_FAULT; /* fd-only call whose file is already gone: no path */
		ac_stat_inc(AC_STAT_READ_FAULT);
	}
	if (!(flags & AC_F_PATH_RESOLVED) && path)
		f->path_len = ac_user_str(f->path, AC_PATH_MAX, path, &flags, AC_F_PATH_TRUNCATED);
	if (path2 && path2_ptr)
		f->path2_len = ac_user_str(path2, AC_PATH_MAX, path2_ptr, &flags, AC_F_PATH2_TRUNCATED);

	ac_fill_header(&f->hdr, task, type, size, sandbox, flags);
	ac_submit(f);
}

/* Records file op `op` of a tracked task. Only called for tracked tasks. */
static __always_inline void ac_file_exit(struct task_struct *task, long nr, __u32 op, const __u64 *a, long ret,
					 __u64 sandbox, __u32 flags)
{
	/* bpf_ringbuf_reserve needs a constant size: one reservation per layout. */
	if (ac_is_two_path(op)) {
		struct ac_file2_event *f2 = ac_reserve(sizeof(*f2));
		if (f2)
			ac_file_fill(&f2->f, f2->path2, AC_EV_FILE2, sizeof(*f2), task, nr, op, a, ret, sandbox, flags);
	} else {
		struct ac_file_event *f = ac_reserve(sizeof(*f));
		if (f)
			ac_file_fill(f, 0, AC_EV_FILE, sizeof(*f), task, nr, op, a, ret, sandbox, flags);
	}
}

#endif /* AGENTCAGE_FILE_BPF_H */
