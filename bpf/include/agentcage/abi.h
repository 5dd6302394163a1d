/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one header shared by the BPF programs and user space: every record that crosses
 * the ring buffer, every map key/value user space writes. Fixed-width types, explicit
 * padding, sizes asserted on both sides. Bump AC_ABI_VERSION on any layout change.
 *
 * Strings in records are NUL-terminated inside fixed arrays; the *_len fields give the
 * bytes copied (including the NUL) so user space never trusts a missing terminator.
 */
#ifndef AGENTCAGE_ABI_H
#define AGENTCAGE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define AC_ABI_VERSION 2

#define AC_TASK_COMM_LEN 16
#define AC_FILENAME_MAX 256 /* bytes: exec filename as given to execve */
#define AC_PATH_MAX 512     /* bytes: a path resolved in the kernel */
#define AC_ARGV_MAX 1024    /* bytes: NUL-separated argv */

/*
 * Record types. Numbers are stable: never reuse one. Ranges:
 *   1-9   process lifecycle          (process.bpf.c)
 *   10-19 file activity, failed syscalls (file.bpf.c, syscall.bpf.c)
 *   20-29 network activity           (net.bpf.c)
 *   30-39 enforcement records made in the kernel (violations, kills)
 */
enum ac_event_type {
	AC_EV_EXEC = 1, /* struct ac_exec_event */
	AC_EV_FORK = 2, /* struct ac_fork_event */
	AC_EV_EXIT = 3, /* struct ac_exit_event */
	AC_EV_EXEC_FAILED = 4, /* struct ac_exec_failed_event: execve/execveat returned an error */
	AC_EV_FILE = 10,    /* struct ac_file_event: one-path file action */
	AC_EV_FILE2 = 11,   /* struct ac_file2_event: two-path file action (rename, link, symlink) */
	AC_EV_SYSCALL = 12, /* struct ac_syscall_event: a syscall failed with EACCES or EPERM */
};

/* File actions (ac_file_event.op). Stable numbers. */
enum ac_file_op {
	AC_FOP_OPEN = 1,     /* open, openat, openat2 */
	AC_FOP_CREAT = 2,
	AC_FOP_UNLINK = 3,   /* unlink, unlinkat without AT_REMOVEDIR */
	AC_FOP_RMDIR = 4,    /* rmdir, unlinkat with AT_REMOVEDIR */
	AC_FOP_RENAME = 5,   /* rename, renameat, renameat2 (FILE2) */
	AC_FOP_MKDIR = 6,    /* mkdir, mkdirat */
	AC_FOP_LINK = 7,     /* link, linkat (FILE2) */
	AC_FOP_SYMLINK = 8,  /* symlink, symlinkat (FILE2: path = link, path2 = target) */
	AC_FOP_CHMOD = 9,    /* chmod, fchmod, fchmodat, fchmodat2 */
	AC_FOP_CHOWN = 10,   /* chown, fchown, lchown, fchownat */
	AC_FOP_TRUNCATE = 11, /* truncate, ftruncate */
	AC_FOP_SETXATTR = 12, /* setxattr, lsetxattr, fsetxattr (FILE2: path2 = xattr name) */
};

/* Flags in ac_event_header.flags */
enum ac_event_flags {
	AC_F_ARGV_TRUNCATED = 1u << 0,     /* argv did not fit in AC_ARGV_MAX */
	AC_F_PATH_TRUNCATED = 1u << 1,     /* a path did not fit, or the walk hit its depth bound */
	AC_F_FILENAME_TRUNCATED = 1u << 2, /* filename did not fit */
	AC_F_READ_FAULT = 1u << 3,         /* a user/kernel memory read failed; field empty */
	AC_F_HOST_MODE = 1u << 4,          /* recorded by the host-wide switch, not a sandbox */
	AC_F_PATH_RESOLVED = 1u << 5,      /* file path walked in the kernel from a struct file */
	AC_F_PATH2_TRUNCATED = 1u << 6,    /* the second path did not fit */
	AC_F_EXE_TRUNCATED = 1u << 7,      /* exec: exe or cwd walk truncated */
};

/* Every record starts with this header. 64 bytes. */
struct ac_event_header {
	__u16 type;         /* enum ac_event_type */
	__u16 abi_version;  /* AC_ABI_VERSION */
	__u32 size;         /* bytes: whole record including this header */
	__u64 ktime_ns;     /* ns: bpf_ktime_get_boot_ns() (CLOCK_BOOTTIME) */
	__u64 cgroup_id;    /* cgroup v2 id of the task (inode number of its cgroup dir) */
	__u64 sandbox_id;   /* sandbox key from ac_cgroups/ac_tasks; 0 in host mode */
	__u64 start_ns;     /* ns since boot: task group leader start (CLOCK_BOOTTIME) */
	__u32 pid;          /* tgid of the task, as user space knows it */
	__u32 tid;          /* thread id */
	__u32 ppid;         /* tgid of the real parent */
	__u32 uid;          /* real uid */
	__u32 gid;          /* real gid */
	__u32 flags;        /* enum ac_event_flags */
};

/* sched_process_exec: a successful exec. */
struct ac_exec_event {
	struct ac_event_header hdr;
	__u32 filename_len;   /* bytes in filename incl. NUL */
	__u32 argv_len;       /* bytes in argv (NUL-separated args) */
	__u32 argc;           /* number of args (from mm, not truncated) */
	__u32 _pad0;
	char comm[AC_TASK_COMM_LEN];
	char filename[AC_FILENAME_MAX];
	char argv[AC_ARGV_MAX];
	/* Added in ABI 2. Paths walked in the kernel (dentries up to the task's root). */
	__u32 exe_len;        /* bytes in exe incl. NUL; 0 when unavailable */
	__u32 cwd_len;        /* bytes in cwd incl. NUL */
	__u32 interp_len;     /* bytes in interp incl. NUL */
	__u32 _pad1;
	char exe[AC_PATH_MAX];         /* the image actually mapped (bprm->file): for a script, the interpreter */
	char cwd[AC_PATH_MAX];         /* working directory at exec */
	char interp[AC_FILENAME_MAX];  /* bprm->interp: for a script, the #! interpreter as written */
};

/* execve/execveat returned an error: nothing was replaced, the caller keeps running. */
struct ac_exec_failed_event {
	struct ac_event_header hdr;
	__s32 result;         /* -errno */
	__u32 filename_len;   /* bytes in filename incl. NUL */
	__u32 argv_len;       /* bytes in argv (NUL-separated, first AC_EXEC_FAILED_ARGS args) */
	__u32 argc;           /* args copied */
	char comm[AC_TASK_COMM_LEN];
	char filename[AC_FILENAME_MAX];
	char argv[AC_ARGV_MAX];
};
#define AC_EXEC_FAILED_ARGS 16 /* args read from the caller's argv array */

/*
 * A file action, recorded at syscall exit. Successful opens (and fd-based calls) carry
 * the path walked in the kernel from the struct file (AC_F_PATH_RESOLVED); everything
 * else carries the path string as the process passed it, relative to dirfd.
 */
struct ac_file_event {
	struct ac_event_header hdr;
	__u32 op;             /* enum ac_file_op */
	__s32 result;         /* syscall return: >= 0 ok (fd for opens), < 0 is -errno */
	__u32 nr;             /* native syscall number */
	__u32 open_flags;     /* open(2) flags (O_*), or unlinkat/renameat2/linkat flags */
	__u32 mode;           /* open/creat/mkdir/chmod mode bits */
	__u32 owner_uid;      /* chown: new owner (-1: unchanged) */
	__u32 owner_gid;      /* chown: new group (-1: unchanged) */
	__s32 dirfd;          /* *at() calls: dirfd as given (AT_FDCWD = -100); fd for f*() calls */
	__u32 path_len;       /* bytes in path incl. NUL */
	__u32 path2_len;      /* bytes in path2 incl. NUL (FILE2 only) */
	char path[AC_PATH_MAX];
};

struct ac_file2_event {
	struct ac_file_event f;
	char path2[AC_PATH_MAX]; /* rename/link: the new name; symlink: the target; setxattr: name */
};

/* A syscall of a tracked process that returned -EACCES or -EPERM. */
struct ac_syscall_event {
	struct ac_event_header hdr;
	__u32 nr;             /* native syscall number */
	__s32 result;         /* -errno */
	__u64 args[6];        /* raw argument registers */
};

/* sched_process_fork: a new process (threads are not reported). */
struct ac_fork_event {
	struct ac_event_header hdr; /* pid = the child, ppid = the parent */
	__u64 child_start_ns;       /* ns since boot: the child's start */
	char comm[AC_TASK_COMM_LEN];
};

/* sched_process_exit: the last thread of a process exits. */
struct ac_exit_event {
	struct ac_event_header hdr;
	__s32 exit_code; /* raw wait status: (code << 8) | signal, as task->exit_code */
	__u32 _pad0;
	char comm[AC_TASK_COMM_LEN];
};

/* Kernel-side counters, one slot per reason in the per-CPU array ac_stats. */
enum ac_stat {
	AC_STAT_EVENTS = 0,      /* records submitted */
	AC_STAT_RINGBUF_FULL,    /* bpf_ringbuf_reserve failed: record lost */
	AC_STAT_TRUNCATED,       /* a string was truncated */
	AC_STAT_READ_FAULT,      /* a memory read failed */
	AC_STAT_TASK_MAP_FULL,   /* ac_tasks full: a child could not be tracked */
	AC_STAT_MAX,
};

/* Global switches, one array entry written by user space before attach. */
struct ac_config {
	__u32 host_mode;    /* 1: record every process on the host */
	__u32 self_tgid;    /* the monitor's own tgid, never recorded */
	__u32 wakeup_bytes; /* bytes: wake the reader only once this much is queued;
	                     * 0 wakes it on every record. Batches reader wakeups. */
	__u32 _pad0;
};

#ifdef __cplusplus
static_assert(sizeof(struct ac_event_header) == 64, "ac_event_header layout");
static_assert(sizeof(struct ac_exec_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX + 16 + 2 * AC_PATH_MAX + AC_FILENAME_MAX, "ac_exec_event layout");
static_assert(sizeof(struct ac_exec_failed_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX, "ac_exec_failed_event layout");
static_assert(sizeof(struct ac_file_event) == 64 + 40 + AC_PATH_MAX, "ac_file_event layout");
static_assert(sizeof(struct ac_file2_event) == 64 + 40 + 2 * AC_PATH_MAX, "ac_file2_event layout");
static_assert(sizeof(struct ac_syscall_event) == 64 + 8 + 48, "ac_syscall_event layout");
static_assert(sizeof(struct ac_fork_event) == 64 + 8 + 16, "ac_fork_event layout");
static_assert(sizeof(struct ac_exit_event) == 64 + 8 + 16, "ac_exit_event layout");
static_assert(sizeof(struct ac_config) == 16, "ac_config layout");
#else
_Static_assert(sizeof(struct ac_event_header) == 64, "ac_event_header layout");
_Static_assert(sizeof(struct ac_exec_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX + 16 + 2 * AC_PATH_MAX + AC_FILENAME_MAX, "ac_exec_event layout");
_Static_assert(sizeof(struct ac_exec_failed_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX, "ac_exec_failed_event layout");
_Static_assert(sizeof(struct ac_file_event) == 64 + 40 + AC_PATH_MAX, "ac_file_event layout");
_Static_assert(sizeof(struct ac_file2_event) == 64 + 40 + 2 * AC_PATH_MAX, "ac_file2_event layout");
_Static_assert(sizeof(struct ac_syscall_event) == 64 + 8 + 48, "ac_syscall_event layout");
_Static_assert(sizeof(struct ac_fork_event) == 64 + 8 + 16, "ac_fork_event layout");
_Static_assert(sizeof(struct ac_exit_event) == 64 + 8 + 16, "ac_exit_event layout");
_Static_assert(sizeof(struct ac_config) == 16, "ac_config layout");
#endif

#endif /* AGENTCAGE_ABI_H */
