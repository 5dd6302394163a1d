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

#define AC_ABI_VERSION 1

#define AC_TASK_COMM_LEN 16
#define AC_FILENAME_MAX 256 /* bytes: exec filename as given to execve */
#define AC_PATH_MAX 512     /* bytes: a path resolved in the kernel */
#define AC_ARGV_MAX 1024    /* bytes: NUL-separated argv */

/*
 * Record types. Numbers are stable: never reuse one. Ranges:
 *   1-9   process lifecycle          (process.bpf.c)
 *   10-19 file activity, failed syscalls (file.bpf.c, syscall.bpf.c)
 *   20-29 network activity           (net.bpf.c)
 *   30-39 enforcement records made in the kernel (violations, kills);
 *         35-39 BPF LSM denials      (lsm.bpf.c)
 */
enum ac_event_type {
	AC_EV_EXEC = 1, /* struct ac_exec_event */
	AC_EV_FORK = 2, /* struct ac_fork_event */
	AC_EV_EXIT = 3, /* struct ac_exit_event */
	AC_EV_LSM_DENY = 35, /* struct ac_lsm_deny_event */
};

/* Flags in ac_event_header.flags */
enum ac_event_flags {
	AC_F_ARGV_TRUNCATED = 1u << 0,     /* argv did not fit in AC_ARGV_MAX */
	AC_F_PATH_TRUNCATED = 1u << 1,     /* a path did not fit, or the walk hit its depth bound */
	AC_F_FILENAME_TRUNCATED = 1u << 2, /* filename did not fit */
	AC_F_READ_FAULT = 1u << 3,         /* a user/kernel memory read failed; field empty */
	AC_F_HOST_MODE = 1u << 4,          /* recorded by the host-wide switch, not a sandbox */
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

/* The BPF LSM hook that denied (ac_lsm_deny_event.hook). */
enum ac_lsm_hook {
	AC_LSM_FILE_OPEN = 1,  /* lsm/file_open */
	AC_LSM_BPRM_CHECK = 2, /* lsm/bprm_check_security */
};

/* What an inode rule denies (ac_inode_rule.deny), a bit mask. */
enum ac_lsm_deny {
	AC_LSM_DENY_OPEN = 1u << 0, /* any open, exec included (file_open) */
	AC_LSM_DENY_EXEC = 1u << 1, /* exec of the image (bprm_check_security) */
};

/*
 * Key of ac_lsm_inodes: an inode, per sandbox. An inode is named by the kernel dev_t of
 * its super block (MAJOR << 20 | MINOR, not the user-space encoding of st_dev) and its
 * inode number, so every name of the file (hard links, bind mounts, /proc/PID/root/...)
 * hits the same entry.
 */
struct ac_inode_key {
	__u64 sandbox; /* sandbox key as in ac_cgroups; 0 = processes recorded in host mode */
	__u64 ino;     /* inode number (inode->i_ino) */
	__u32 dev;     /* kernel dev_t of inode->i_sb->s_dev */
	__u32 _pad0;
};

struct ac_inode_rule {
	__u32 rule_id; /* user space's index of the rule, echoed in denial records */
	__u32 deny;    /* enum ac_lsm_deny bits */
};

/*
 * The BPF LSM self-test (ac_lsm_probe, one entry). On a kernel built with BPF LSM but
 * booted without "bpf" in lsm=, the programs load and attach and then never run; user
 * space sets tgid, opens a file, and trusts BPF LSM only if lsm/file_open set seen.
 */
struct ac_lsm_probe {
	__u32 tgid; /* the process whose next open marks seen; 0: off */
	__u32 seen; /* set to 1 by lsm/file_open */
};

/* A BPF LSM hook denied a tracked task (returned ret). */
struct ac_lsm_deny_event {
	struct ac_event_header hdr; /* flags: AC_F_PATH_TRUNCATED when path is only the name */
	__u32 hook;     /* enum ac_lsm_hook */
	__u32 rule_id;  /* ac_inode_rule.rule_id that matched */
	__u64 ino;      /* the denied inode */
	__u32 dev;      /* its kernel dev_t */
	__u32 f_mode;   /* file->f_mode (FMODE_READ 0x1, FMODE_WRITE 0x2, FMODE_EXEC 0x20) */
	__u32 f_flags;  /* file->f_flags: open(2) flags; exec opens add __FMODE_EXEC (0x20) */
	__s32 ret;      /* what the hook returned: -EACCES */
	__u32 path_len; /* bytes in path incl. NUL */
	__u32 _pad0;
	char comm[AC_TASK_COMM_LEN];
	char path[AC_PATH_MAX]; /* absolute path resolved in the kernel (bpf_d_path) */
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
static_assert(sizeof(struct ac_exec_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX, "ac_exec_event layout");
static_assert(sizeof(struct ac_fork_event) == 64 + 8 + 16, "ac_fork_event layout");
static_assert(sizeof(struct ac_exit_event) == 64 + 8 + 16, "ac_exit_event layout");
static_assert(sizeof(struct ac_config) == 16, "ac_config layout");
static_assert(sizeof(struct ac_inode_key) == 24, "ac_inode_key layout");
static_assert(sizeof(struct ac_inode_rule) == 8, "ac_inode_rule layout");
static_assert(sizeof(struct ac_lsm_probe) == 8, "ac_lsm_probe layout");
static_assert(sizeof(struct ac_lsm_deny_event) == 64 + 40 + AC_TASK_COMM_LEN + AC_PATH_MAX, "ac_lsm_deny_event layout");
#else
_Static_assert(sizeof(struct ac_event_header) == 64, "ac_event_header layout");
_Static_assert(sizeof(struct ac_exec_event) == 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX, "ac_exec_event layout");
_Static_assert(sizeof(struct ac_fork_event) == 64 + 8 + 16, "ac_fork_event layout");
_Static_assert(sizeof(struct ac_exit_event) == 64 + 8 + 16, "ac_exit_event layout");
_Static_assert(sizeof(struct ac_config) == 16, "ac_config layout");
_Static_assert(sizeof(struct ac_inode_key) == 24, "ac_inode_key layout");
_Static_assert(sizeof(struct ac_inode_rule) == 8, "ac_inode_rule layout");
_Static_assert(sizeof(struct ac_lsm_probe) == 8, "ac_lsm_probe layout");
_Static_assert(sizeof(struct ac_lsm_deny_event) == 64 + 40 + AC_TASK_COMM_LEN + AC_PATH_MAX, "ac_lsm_deny_event layout");
#endif

#endif /* AGENTCAGE_ABI_H */
