/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * File actions, recorded at syscall exit (called from the one sys_exit program in
 * syscall.bpf.c; see there why there is only one). Exit is the place where the result is
 * known and, for a successful open, the new fd already points at the struct file the
 * kernel opened: we resolve that file's real path (path.bpf.h) instead of trusting the
 * user's string (fd-based calls like fchmod resolve their fd the same way). Failed
 * actions, and actions that return no fd (unlink, rename, mkdir, chmod, ...), record the
 * string the process passed, read from its memory at exit, with the dirfd it is
 * relative to. That string is the caller's
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

/*
 * Each file syscall, described by one word: its op and which argument register holds
 * each field (AC_NA: none). A table instead of a switch: the hot-path test for "is this a
 * file syscall" is one bounded array load, and ac_file_fill() has no 30-way branch for
 * the verifier to explore (a switch here made the program take seconds to verify).
 */
#define AC_NA 7
#define AC_FSYS(op, path, path2, dirfd, flags, mode, uid, gid, fd)                                \
	((op) | (path) << 5 | (path2) << 8 | (dirfd) << 11 | (flags) << 14 | (mode) << 17 |       \
	 (uid) << 20 | (gid) << 23 | (fd) << 26)
#define AC_FSYS_CREAT (1u << 29)   /* flags are O_CREAT|O_WRONLY|O_TRUNC */
#define AC_FSYS_OPENAT2 (1u << 30) /* flags and mode in struct open_how at arg 2 */
#define AC_FSYS_ARG(d, shift) (((d) >> (shift)) & 7)
#define AC_FSYS_MAX 512

static const __u32 ac_fsys[AC_FSYS_MAX] = {
	/*                       op               path   path2  dirfd  flags  mode   uid    gid    fd */
	[AC_NR_open] =       AC_FSYS(AC_FOP_OPEN,     0,     AC_NA, AC_NA, 1,     2,     AC_NA, AC_NA, AC_NA),
	[AC_NR_openat] =     AC_FSYS(AC_FOP_OPEN,     1,     AC_NA, 0,     2,     3,     AC_NA, AC_NA, AC_NA),
	[AC_NR_openat2] =    AC_FSYS(AC_FOP_OPEN,     1,     AC_NA, 0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA) | AC_FSYS_OPENAT2,
	[AC_NR_creat] =      AC_FSYS(AC_FOP_CREAT,    0,     AC_NA, AC_NA, AC_NA, 1,     AC_NA, AC_NA, AC_NA) | AC_FSYS_CREAT,
	[AC_NR_unlink] =     AC_FSYS(AC_FOP_UNLINK,   0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_unlinkat] =   AC_FSYS(AC_FOP_UNLINK,   1,     AC_NA, 0,     2,     AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_rmdir] =      AC_FSYS(AC_FOP_RMDIR,    0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_rename] =     AC_FSYS(AC_FOP_RENAME,   0,     1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	/* renameat/linkat: newdirfd (arg 2) is not recorded, the record has one dirfd. */
	[AC_NR_renameat] =   AC_FSYS(AC_FOP_RENAME,   1,     3,     0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_renameat2] =  AC_FSYS(AC_FOP_RENAME,   1,     3,     0,     4,     AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_mkdir] =      AC_FSYS(AC_FOP_MKDIR,    0,     AC_NA, AC_NA, AC_NA, 1,     AC_NA, AC_NA, AC_NA),
	[AC_NR_mkdirat] =    AC_FSYS(AC_FOP_MKDIR,    1,     AC_NA, 0,     AC_NA, 2,     AC_NA, AC_NA, AC_NA),
	[AC_NR_link] =       AC_FSYS(AC_FOP_LINK,     0,     1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_linkat] =     AC_FSYS(AC_FOP_LINK,     1,     3,     0,     4,     AC_NA, AC_NA, AC_NA, AC_NA),
	/* symlink: path is the new link, path2 the target it points to. */
	[AC_NR_symlink] =    AC_FSYS(AC_FOP_SYMLINK,  1,     0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_symlinkat] =  AC_FSYS(AC_FOP_SYMLINK,  2,     0,     1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_chmod] =      AC_FSYS(AC_FOP_CHMOD,    0,     AC_NA, AC_NA, AC_NA, 1,     AC_NA, AC_NA, AC_NA),
	[AC_NR_fchmod] =     AC_FSYS(AC_FOP_CHMOD,    AC_NA, AC_NA, AC_NA, AC_NA, 1,     AC_NA, AC_NA, 0),
	[AC_NR_fchmodat] =   AC_FSYS(AC_FOP_CHMOD,    1,     AC_NA, 0,     AC_NA, 2,     AC_NA, AC_NA, AC_NA),
	[AC_NR_fchmodat2] =  AC_FSYS(AC_FOP_CHMOD,    1,     AC_NA, 0,     3,     2,     AC_NA, AC_NA, AC_NA),
	[AC_NR_chown] =      AC_FSYS(AC_FOP_CHOWN,    0,     AC_NA, AC_NA, AC_NA, AC_NA, 1,     2,     AC_NA),
	[AC_NR_lchown] =     AC_FSYS(AC_FOP_CHOWN,    0,     AC_NA, AC_NA, AC_NA, AC_NA, 1,     2,     AC_NA),
	[AC_NR_fchown] =     AC_FSYS(AC_FOP_CHOWN,    AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, 1,     2,     0),
	[AC_NR_fchownat] =   AC_FSYS(AC_FOP_CHOWN,    1,     AC_NA, 0,     4,     AC_NA, 2,     3,     AC_NA),
	[AC_NR_truncate] =   AC_FSYS(AC_FOP_TRUNCATE, 0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_ftruncate] =  AC_FSYS(AC_FOP_TRUNCATE, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, 0),
	/* setxattr: path2 carries the attribute name. */
	[AC_NR_setxattr] =   AC_FSYS(AC_FOP_SETXATTR, 0,     1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_lsetxattr] =  AC_FSYS(AC_FOP_SETXATTR, 0,     1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
	[AC_NR_fsetxattr] =  AC_FSYS(AC_FOP_SETXATTR, AC_NA, 1,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA, 0),
	[AC_NR_setxattrat] = AC_FSYS(AC_FOP_SETXATTR, 1,     3,     0,     AC_NA, AC_NA, AC_NA, AC_NA, AC_NA),
};

/* The descriptor of syscall nr, 0 when it is not a file syscall. */
static __always_inline __u32 ac_file_desc(long nr)
{
	if ((unsigned long)nr >= AC_FSYS_MAX)
		return 0;
	return ac_fsys[nr];
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
 * path2 is NULL for the one-path layout) for the syscall described by `d`, with argument
 * registers a[0..5] (a[6..7] are 0, the value of AC_NA) and result `ret`.
 */
static __always_inline void ac_file_fill(struct ac_file_event *f, char *path2, __u16 type, __u32 size,
					 struct task_struct *task, long nr, __u32 d, const __u64 *a, long ret,
					 __u64 sandbox, __u32 flags)
{
	__u32 op = d & 31;
	__u32 i_path = AC_FSYS_ARG(d, 5), i_path2 = AC_FSYS_ARG(d, 8), i_dirfd = AC_FSYS_ARG(d, 11);
	__u32 i_uid = AC_FSYS_ARG(d, 20), i_gid = AC_FSYS_ARG(d, 23), i_fd = AC_FSYS_ARG(d, 26);
	__u64 path = a[i_path], path2_ptr = a[i_path2]; /* user pointers, 0 when absent */
	long fd = i_fd != AC_NA ? (long)(int)a[i_fd] : -1; /* fd-based calls resolve from the fd */

	f->nr = nr;
	f->result = ret;
	f->open_flags = a[AC_FSYS_ARG(d, 14)];
	f->mode = a[AC_FSYS_ARG(d, 17)];
	f->dirfd = i_dirfd != AC_NA ? (int)a[i_dirfd] : AC_AT_FDCWD;
	f->owner_uid = i_uid != AC_NA ? (__u32)a[i_uid] : (__u32)-1;
	f->owner_gid = i_gid != AC_NA ? (__u32)a[i_gid] : (__u32)-1;
	if (d & AC_FSYS_CREAT)
		f->open_flags = AC_O_CREAT_WRONLY_TRUNC;
	if (d & AC_FSYS_OPENAT2) {
		struct open_how how = {};
		if (bpf_probe_read_user(&how, sizeof(how), (const void *)a[2]) == 0) {
			f->open_flags = how.flags;
			f->mode = how.mode;
		}
	}
	if (op == AC_FOP_UNLINK && (f->open_flags & AC_AT_REMOVEDIR))
		op = AC_FOP_RMDIR;
	f->op = op;

	/* A successful open: the fd it returned names the file the kernel really opened. */
	if (fd >= 0) {
		f->dirfd = fd;
	} else if ((op == AC_FOP_OPEN || op == AC_FOP_CREAT) && ret >= 0) {
		fd = ret; /* dirfd keeps the caller's value; result carries the fd */
	}
	if (fd >= 0 && !ac_file_path_from_fd(f, task, fd, &flags) && !path) {
		flags |= AC_F_READ_FAULT; /* fd-only call whose file is already gone: no path */
		ac_stat_inc(AC_STAT_READ_FAULT);
	}
	if (!(flags & AC_F_PATH_RESOLVED) && path)
		f->path_len = ac_user_str(f->path, AC_PATH_MAX, path, &flags, AC_F_PATH_TRUNCATED);
	if (path2 && path2_ptr)
		f->path2_len = ac_user_str(path2, AC_PATH_MAX, path2_ptr, &flags, AC_F_PATH2_TRUNCATED);

	ac_fill_header_btf(&f->hdr, task, type, size, sandbox, flags);
}

/*
 * Fold a failure that repeats (abi.h, ac_fold): returns 1 when this record is counted
 * instead of sent. Only what names the same attempt folds: a path that is absolute or
 * relative to the cwd (a dirfd can be re-pointed between two calls, so dirfd-relative
 * paths never fold), complete (not truncated, no read fault). The hash covers the op,
 * flags, mode, dirfd, the thread's start time, every path byte, and the task's cwd and
 * root (a relative path or a chroot names another file after chdir/chroot), keyed by a
 * secret seed (random at first load, kept across daemon restarts) so an agent cannot
 * craft a second path that passes for the first.
 */
static __always_inline int ac_file_fold(struct ac_file_event *f, struct task_struct *task)
{
	struct ac_config *cfg = ac_config();
	__u32 len = f->path_len;

	if (!cfg || f->result >= 0 || len < 2 || len > AC_PATH_MAX ||
	    (f->hdr.flags & (AC_F_PATH_TRUNCATED | AC_F_READ_FAULT)) ||
	    (f->path[0] != '/' && f->dirfd != AC_AT_FDCWD))
		return 0;
	__u64 h = cfg->fold_seed ^ ((__u64)f->op << 32 | f->open_flags);
	h = (h ^ ((__u64)f->mode << 32 | (__u32)f->dirfd)) * 0x9e3779b97f4a7c15ull;
	/* The thread's start: a tid reused by a new thread is another key, never its count. */
	h ^= BPF_CORE_READ(task, start_time);
	/* Read as numbers (probe reads): the verifier allows no arithmetic on the pointers. */
	h ^= (__u64)BPF_CORE_READ(task, fs, pwd.dentry) ^ ((__u64)BPF_CORE_READ(task, fs, pwd.mnt) << 1);
	h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
	h ^= (__u64)BPF_CORE_READ(task, fs, root.dentry) ^ ((__u64)BPF_CORE_READ(task, fs, root.mnt) << 1);
	for (__u32 i = 0; i < AC_PATH_MAX / 8; i++) {
		if (i * 8 >= len)
			break;
		h = (h ^ *(__u64 *)&f->path[i * 8]) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 31;
	}
	h ^= len;

	struct ac_fold_key key = {.tid = f->hdr.tid, .result = f->result, .nr = f->nr, .hash = h};
	__u64 now = f->hdr.ktime_ns;
	struct ac_fold_value *v = bpf_map_lookup_elem(&ac_fold, &key);
	if (v && now - v->emit_ns < AC_FOLD_WINDOW_NS) {
		v->count += 1;
		v->last_ns = now;
		ac_stat_inc(AC_STAT_FOLDED);
		return 1;
	}
	if (v) {
		f->repeats = v->count > 0xffffffffull ? 0xffffffffu : (__u32)v->count;
		v->emit_ns = now;
		v->last_ns = now;
		v->count = 0;
	} else {
		struct ac_fold_value nv = {.emit_ns = now, .last_ns = now};
		if (bpf_map_update_elem(&ac_fold, &key, &nv, BPF_NOEXIST) != 0)
			return 0; /* full (or a race on a new key): recorded unfolded */
	}
	f->fold_hash = h;
	f->hdr.flags |= AC_F_FOLDED;
	return 0;
}

/* Records the file syscall described by `d`. Only called for tracked tasks. */
static __always_inline void ac_file_exit(struct task_struct *task, long nr, __u32 d, const __u64 *a, long ret,
					 __u64 sandbox, __u32 flags)
{
	__u32 op = d & 31;

	/* bpf_ringbuf_reserve needs a constant size: one reservation per layout. */
	if (ac_is_two_path(op)) {
		struct ac_file2_event *f2 = ac_reserve_class(sizeof(*f2), AC_CLASS_BULK, sandbox);
		if (f2) {
			ac_file_fill(&f2->f, f2->path2, AC_EV_FILE2, sizeof(*f2), task, nr, d, a, ret, sandbox, flags);
			ac_submit(f2);
		}
	} else {
		struct ac_file_event *f = ac_reserve_class(sizeof(*f), AC_CLASS_BULK, sandbox);
		if (!f)
			return;
		ac_file_fill(f, 0, AC_EV_FILE, sizeof(*f), task, nr, d, a, ret, sandbox, flags);
		if (ac_file_fold(f, task))
			ac_discard(f);
		else
			ac_submit(f);
	}
}

#endif /* AGENTCAGE_FILE_BPF_H */
