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

#define AC_ABI_VERSION 3

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
	AC_EV_EXEC_FAILED = 4, /* struct ac_exec_failed_event: execve/execveat returned an error */
	AC_EV_FILE = 10,    /* struct ac_file_event: one-path file action */
	AC_EV_FILE2 = 11,   /* struct ac_file2_event: two-path file action (rename, link, symlink) */
	AC_EV_SYSCALL = 12, /* struct ac_syscall_event: a syscall failed with EACCES or EPERM */
	AC_EV_NET = 20, /* struct ac_net_event: an allowed network action (net.bpf.c) */
	AC_EV_NET_VIOLATION = 30, /* struct ac_net_event: denied, killed or audited by net policy */
	AC_EV_LSM_DENY = 35, /* struct ac_lsm_deny_event */
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
	AC_F_FOLDED = 1u << 8,             /* file failure with an ac_fold entry: identical ones are counted there */
	AC_F_KILLED = 1u << 9,             /* exec_failed: the kernel sent the caller SIGKILL (AC_SB_EXEC_KILL) */
	AC_F_AUDIT = 1u << 10,             /* syscall: in the audit set (AC_SB_AUDIT_SYSCALLS), any result */
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
	__u32 cwd_len;        /* bytes in cwd incl. NUL; 0 when filename is absolute */
	__u32 pad[3];
	char comm[AC_TASK_COMM_LEN];
	char filename[AC_FILENAME_MAX];
	char argv[AC_ARGV_MAX];
	char cwd[AC_PATH_MAX];  /* working directory at the call: what a relative filename meant */
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
	/* Added in ABI 3 (AC_F_FOLDED records): identical failures of this thread folded
	 * since its previous record of them, and the ac_fold key's hash. */
	__u32 repeats;
	__u32 _pad0;
	__u64 fold_hash;
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
/* ac_exit_event.exit_flags */
#define AC_EXIT_OOM_VICTIM 0x1 /* the OOM killer chose this process (signal->oom_mm was set) */

struct ac_exit_event {
	struct ac_event_header hdr;
	__s32 exit_code; /* raw wait status: (code << 8) | signal, as task->exit_code */
	__u32 exit_flags; /* AC_EXIT_* */
	char comm[AC_TASK_COMM_LEN];
};

/*
 * Network (net.bpf.c). One record layout serves observation (AC_EV_NET) and violations
 * (AC_EV_NET_VIOLATION). Addresses are kept as 16 bytes in network order: IPv4 as the
 * v4-mapped form ::ffff:a.b.c.d with AC_NET_F_V4 set, a real v4-mapped IPv6 address with
 * family AF_INET6 and the same bytes, so user space can tell which one the process used.
 */
#define AC_UNIX_PATH_MAX 108 /* bytes: sizeof(sockaddr_un.sun_path) */

enum ac_net_op {
	AC_NET_CONNECT = 1,
	AC_NET_BIND = 2,
	AC_NET_SENDMSG = 3,  /* sendto/sendmsg with a destination (unconnected socket); allowed
	                      * ones once per socket and destination (ac_net_seen) */
	AC_NET_LISTEN = 4,
	AC_NET_ACCEPT = 5,
	AC_NET_SOCKET = 6,   /* socket(2) creation (only raw sockets are reported) */
};

/* Policy decision carried by violations; also the per-sandbox default action. */
enum ac_net_action {
	AC_NET_ALLOW = 0,
	AC_NET_DENY = 1,  /* the syscall fails with EPERM */
	AC_NET_KILL = 2,  /* EPERM, and the process gets SIGKILL */
	AC_NET_AUDIT = 3, /* allowed, recorded as what would have been denied */
};

/* Why a violation was raised (which check failed). */
enum ac_net_reason {
	AC_NET_R_NO_RULE = 1,    /* no allow rule matched address/port/protocol */
	AC_NET_R_UNIX_PATH = 2,  /* unix path/abstract name not in the allow list */
	AC_NET_R_SOCKET_TYPE = 3, /* raw/ping/other non-TCP/UDP inet socket in a sandbox with policy */
	AC_NET_R_LOCAL_ALIAS = 4, /* the address reaches this host as the loopback address (or an
	                           * IPv4-compatible one as its IPv4 address), which no rule allows */
};

/* Flags in ac_net_event.net_flags */
enum ac_net_flags {
	AC_NET_F_V4 = 1u << 0,         /* addr holds an IPv4 address (mapped form) */
	AC_NET_F_UNIX_ABSTRACT = 1u << 1, /* unix_path is an abstract name (leading NUL dropped) */
	AC_NET_F_AUDIT_MODE = 1u << 2, /* the sandbox runs in audit mode: nothing denied */
	AC_NET_F_UNIX_TRUNC = 1u << 3, /* unix path did not fit */
	AC_NET_F_RULE_ACTION = 1u << 4, /* a rule with an action (deny/kill/audit) for a prefix
	                                 * containing the address decided, not network.default;
	                                 * policy_action then holds that rule's action */
	AC_NET_F_DNS_REDIRECT = 1u << 5, /* a DNS query (port 53) sent to agentcage's resolver
	                                  * instead; addr/port are where the process sent it */
	AC_NET_F_LEARNED = 1u << 6,     /* allowed as an address an allowed name resolved to */
	AC_NET_F_NAME_CHECK = 1u << 7,  /* a learned connect on a TLS/HTTP port, sent to
	                                 * agentcage's name check instead (ac_name_orig) */
};

struct ac_net_event {
	struct ac_event_header hdr;
	__u8 op;          /* enum ac_net_op */
	__u8 action;      /* enum ac_net_action (violations); 0 for observations */
	__u8 reason;      /* enum ac_net_reason (violations) */
	__u8 policy_action; /* enum ac_net_action: the sandbox's configured default, or the
	                     * deciding rule's action with AC_NET_F_RULE_ACTION (violations) */
	__u16 family;     /* AF_INET, AF_INET6, AF_UNIX */
	__u16 sock_type;  /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET */
	__u16 protocol;   /* IPPROTO_* for inet sockets */
	__u16 port;       /* host order: remote port (connect/sendmsg/accept), local (bind/listen) */
	__u16 local_port; /* host order: local port where known (accept), else 0 */
	__u16 unix_path_len; /* bytes in unix_path (no NUL, abstract names without the leading NUL) */
	__u32 net_flags;  /* enum ac_net_flags */
	__u32 _pad1;
	__u8 addr[16];    /* network order; see above */
	__u8 local_addr[16]; /* network order: accept's local address */
	char unix_path[AC_UNIX_PATH_MAX];
	__u8 _pad2[4];
	char comm[AC_TASK_COMM_LEN]; /* the acting thread's comm */
};

/*
 * Network policy maps, written by user space (net_policy.cc compile()).
 * ac_net_rules: LPM trie. The sandbox key is the first 64 bits of the data and always
 * fully counted in prefixlen, so one trie serves every sandbox and a lookup never
 * crosses into another sandbox's rules. Addresses are IPv6 or v4-mapped IPv4
 * (::ffff:0:0/96 + IPv4 prefix), so an IPv4 connect and a v4-mapped IPv6 connect hit
 * the same rules.
 */
#define AC_NET_KEY_SANDBOX_BITS 64
struct ac_net_rule_key {
	__u32 prefixlen;  /* bits: 64 (sandbox) + address prefix length (IPv4: 96 + n) */
	__u32 sandbox_lo; /* sandbox key, low 32 bits (two u32: no padding inside the key) */
	__u32 sandbox_hi; /* sandbox key, high 32 bits */
	__u8 addr[16];    /* network order */
};

#define AC_NET_MAX_PORT_RANGES 16
enum ac_net_proto_bits {
	AC_NET_P_TCP = 1u << 0,
	AC_NET_P_UDP = 1u << 1,
	AC_NET_P_OTHER = 1u << 2, /* ICMP (ping sockets) and anything else */
	AC_NET_P_ANY = 0x7,
};
struct ac_net_port_range {
	__u16 lo;   /* host order, inclusive */
	__u16 hi;   /* host order, inclusive */
	__u8 proto; /* enum ac_net_proto_bits */
	__u8 _pad[3];
};
/*
 * The trie returns only the longest matching prefix, so each entry carries the port
 * ranges of every shorter allowed prefix that contains it (compile() merges them).
 */
struct ac_net_rule_value {
	__u32 count;       /* ranges in use */
	__u16 deny_action; /* enum ac_net_action for what this entry does not allow, set when
	                    * the prefix lies in a deny/kill/audit rule; 0: the sandbox default */
	__u16 prefix;      /* this entry's own address prefix length (0..128, IPv4 96 + n): tells
	                    * a rule written for loopback from a wider one that only contains it */
	struct ac_net_port_range ranges[AC_NET_MAX_PORT_RANGES];
};

/* ac_net_policy: sandbox key -> policy. A sandbox without an entry is unrestricted. */
enum ac_net_sandbox_flags {
	AC_NET_S_AUDIT = 1u << 0,    /* audit mode: record violations, deny nothing */
	AC_NET_S_UNIX_ANY = 1u << 1, /* unix sockets unrestricted (still observed) */
};
struct ac_net_sandbox {
	__u32 default_action; /* enum ac_net_action for traffic no rule allows */
	__u32 flags;          /* enum ac_net_sandbox_flags */
	__u16 dns_port;       /* host order; non-zero: every connect/sendmsg to port 53 goes to
	                       * agentcage's resolver at 127.0.0.1 (IPv6: ::1) on this port */
	__u16 dns_port6;      /* host order: the resolver's port on ::1; 0: IPv6 queries are
	                       * refused (no IPv6 loopback to answer them on) */
	__u16 name_port;      /* host order; non-zero: a TCP connect to port 80 or 443 of an address
	                       * allowed only as learned goes to agentcage's name check at
	                       * 127.0.0.1 on this port, which reads the TLS SNI / HTTP Host */
	__u16 name_port6;     /* the same on ::1 for IPv6 destinations; 0: those are refused */
};

/*
 * ac_name_orig: socket cookie -> where a connect sent to the name check was going. The
 * name check finds the client socket's cookie with sock_diag and takes the entry.
 */
struct ac_name_orig {
	__u64 sandbox;
	__u8 addr[16]; /* network order, IPv4 as ::ffff:a.b.c.d */
	__u16 port;    /* host order */
	__u16 family;  /* AF_* the process used */
	__u32 _pad0;
};

/*
 * ac_net_learned: addresses an allowed name resolved to (network.domains), per sandbox,
 * written by agentcage's resolver. Connectable on the name rule's ports until expires_ns
 * (CLOCK_BOOTTIME: the answer's TTL plus a grace), unless a block prefix contains them.
 */
#define AC_NET_LEARNED_RANGES 8
struct ac_net_learned_key {
	__u64 sandbox;
	__u8 addr[16]; /* network order, IPv4 as ::ffff:a.b.c.d */
};
struct ac_net_learned_value {
	__u64 expires_ns;
	__u32 count;   /* ranges in use */
	__u32 _pad0;
	struct ac_net_port_range ranges[AC_NET_LEARNED_RANGES];
};

/* ac_net_unix: allowed unix socket names, exact match. Abstract names start with '@'. */
struct ac_net_unix_key {
	__u64 sandbox;
	char path[AC_UNIX_PATH_MAX]; /* NUL-padded */
	__u8 _pad[4];
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
	AC_STAT_NET_DENIED,      /* network actions denied by policy */
	AC_STAT_NET_KILL_FAILED, /* bpf_send_signal failed for a kill action */
	AC_STAT_SHED,            /* a record refused to keep the ring's reserve (ac_shed counts per sandbox) */
	AC_STAT_FOLDED,          /* identical failures counted in ac_fold instead of recorded */
	AC_STAT_EXEC_KILL_FAILED, /* bpf_send_signal failed for actions.exec: kill */
	AC_STAT_MAX,
};

/*
 * ac_sandbox_flags: sandbox key -> these bits, for what the kernel does itself to a
 * sandbox's processes (beyond recording them). No entry: none.
 */
enum ac_sandbox_flag {
	/* actions.exec: kill. An execve/execveat refused with EACCES (Landlock EXECUTE outside
	 * filesystem.exec) gets the caller SIGKILL at the syscall's exit, before it returns to
	 * user space: the refused image never runs, and neither does the caller's next step. */
	AC_SB_EXEC_KILL = 1u << 0,
	/* mode: audit. A syscall in the sandbox's ac_audit_syscalls set (what its seccomp
	 * profile would refuse) is recorded whatever its result, with AC_F_AUDIT: seccomp's
	 * log action only writes the kernel log. */
	AC_SB_AUDIT_SYSCALLS = 1u << 1,
};

/* ac_audit_syscalls: sandbox key -> the native syscall numbers its profile would refuse. */
#define AC_SYSCALL_SET_BITS 512
struct ac_syscall_set {
	__u64 bits[AC_SYSCALL_SET_BITS / 64];
};

/* Global switches, one array entry written by user space before attach. */
struct ac_config {
	__u32 host_mode;    /* 1: record every process on the host */
	__u32 self_tgid;    /* the monitor's own tgid, never recorded */
	__u32 wakeup_bytes; /* bytes: wake the reader only once this much is queued;
	                     * 0 wakes it on every record. Batches reader wakeups. */
	__u32 audit_sandboxes; /* sandboxes with AC_SB_AUDIT_SYSCALLS; 0 keeps sys_exit's fast path */
	__u64 fold_seed;    /* random, kept across restarts: keys ac_fold's path hash */
};

/*
 * Folding repeated failures (file.bpf.h). A failed file action whose thread failed the
 * same way (same syscall, errno, flags, path bytes, directory and root) less than
 * AC_FOLD_WINDOW_NS after its last record is counted in ac_fold, not recorded; the next
 * record after the window carries the count (repeats), and user space sweeps the counts
 * of entries idle past the window into an event (EventPipeline::folded). One key per
 * thread: a thread's syscall exits never run concurrently, so the counts need no atomics.
 */
#define AC_FOLD_WINDOW_NS 1000000000ull
struct ac_fold_key {
	__u32 tid;
	__s32 result; /* -errno */
	__u32 nr;
	__u32 _pad0;
	__u64 hash;   /* keyed hash of op, flags, dirfd, path bytes, cwd and root (fold_seed) */
};
struct ac_fold_value {
	__u64 emit_ns; /* boot ns of the last record for this key */
	__u64 last_ns; /* boot ns of the last failure folded into count */
	__u64 count;   /* failures folded since emit_ns */
};

/*
 * The layout both sides must agree on, checked by both compilers (clang -target bpf for
 * the programs, the C++ compiler for the decoder) from this one list: a field moved,
 * resized or padded differently on either side fails the build rather than misreading
 * records. Sizes, and the offset of every field whose position a change could shift.
 */
#ifdef __cplusplus
#define AC_ABI_ASSERT(cond, what) static_assert(cond, what)
#else
#define AC_ABI_ASSERT(cond, what) _Static_assert(cond, what)
#endif
#define AC_ABI_SIZE(type, bytes) AC_ABI_ASSERT(sizeof(struct type) == (bytes), #type " size")
#define AC_ABI_OFFSET(type, field, off) \
	AC_ABI_ASSERT(__builtin_offsetof(struct type, field) == (off), #type "." #field " offset")

AC_ABI_SIZE(ac_event_header, 64);
AC_ABI_SIZE(ac_exec_event, 64 + 16 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX + 16 + 2 * AC_PATH_MAX + AC_FILENAME_MAX);
AC_ABI_SIZE(ac_exec_failed_event, 64 + 32 + 16 + AC_FILENAME_MAX + AC_ARGV_MAX + AC_PATH_MAX);
AC_ABI_SIZE(ac_file_event, 64 + 56 + AC_PATH_MAX);
AC_ABI_SIZE(ac_file2_event, 64 + 56 + 2 * AC_PATH_MAX);
AC_ABI_SIZE(ac_fold_key, 24);
AC_ABI_SIZE(ac_fold_value, 24);
AC_ABI_SIZE(ac_syscall_event, 64 + 8 + 48);
AC_ABI_SIZE(ac_fork_event, 64 + 8 + 16);
AC_ABI_SIZE(ac_exit_event, 64 + 8 + 16);
AC_ABI_SIZE(ac_config, 24);
AC_ABI_SIZE(ac_net_event, 64 + 24 + 32 + AC_UNIX_PATH_MAX + 4 + AC_TASK_COMM_LEN);
AC_ABI_SIZE(ac_net_rule_key, 28);
AC_ABI_SIZE(ac_net_rule_value, 8 + 8 * AC_NET_MAX_PORT_RANGES);
AC_ABI_SIZE(ac_net_sandbox, 16);
AC_ABI_SIZE(ac_net_learned_key, 24);
AC_ABI_SIZE(ac_name_orig, 32);
AC_ABI_SIZE(ac_net_learned_value, 16 + 8 * AC_NET_LEARNED_RANGES);
AC_ABI_SIZE(ac_net_unix_key, 8 + AC_UNIX_PATH_MAX + 4);
AC_ABI_SIZE(ac_inode_key, 24);
AC_ABI_SIZE(ac_inode_rule, 8);
AC_ABI_SIZE(ac_lsm_probe, 8);
AC_ABI_SIZE(ac_lsm_deny_event, 64 + 40 + AC_TASK_COMM_LEN + AC_PATH_MAX);
AC_ABI_OFFSET(ac_event_header, abi_version, 2);
AC_ABI_OFFSET(ac_event_header, size, 4);
AC_ABI_OFFSET(ac_event_header, ktime_ns, 8);
AC_ABI_OFFSET(ac_event_header, cgroup_id, 16);
AC_ABI_OFFSET(ac_event_header, sandbox_id, 24);
AC_ABI_OFFSET(ac_event_header, start_ns, 32);
AC_ABI_OFFSET(ac_event_header, pid, 40);
AC_ABI_OFFSET(ac_event_header, tid, 44);
AC_ABI_OFFSET(ac_event_header, ppid, 48);
AC_ABI_OFFSET(ac_event_header, uid, 52);
AC_ABI_OFFSET(ac_event_header, gid, 56);
AC_ABI_OFFSET(ac_event_header, flags, 60);
AC_ABI_OFFSET(ac_exec_event, filename_len, 64);
AC_ABI_OFFSET(ac_exec_event, comm, 80);
AC_ABI_OFFSET(ac_exec_event, filename, 96);
AC_ABI_OFFSET(ac_exec_event, argv, 352);
AC_ABI_OFFSET(ac_exec_event, exe_len, 1376);
AC_ABI_OFFSET(ac_exec_event, exe, 1392);
AC_ABI_OFFSET(ac_exec_event, cwd, 1904);
AC_ABI_OFFSET(ac_exec_event, interp, 2416);
AC_ABI_OFFSET(ac_exec_failed_event, result, 64);
AC_ABI_OFFSET(ac_exec_failed_event, cwd_len, 80);
AC_ABI_OFFSET(ac_exec_failed_event, comm, 96);
AC_ABI_OFFSET(ac_exec_failed_event, filename, 112);
AC_ABI_OFFSET(ac_exec_failed_event, argv, 368);
AC_ABI_OFFSET(ac_exec_failed_event, cwd, 1392);
AC_ABI_OFFSET(ac_file_event, op, 64);
AC_ABI_OFFSET(ac_file_event, dirfd, 92);
AC_ABI_OFFSET(ac_file_event, path_len, 96);
AC_ABI_OFFSET(ac_file_event, repeats, 104);
AC_ABI_OFFSET(ac_file_event, fold_hash, 112);
AC_ABI_OFFSET(ac_file_event, path, 120);
AC_ABI_OFFSET(ac_file2_event, path2, 632);
AC_ABI_OFFSET(ac_fold_key, hash, 16);
AC_ABI_OFFSET(ac_config, fold_seed, 16);
AC_ABI_OFFSET(ac_syscall_event, nr, 64);
AC_ABI_OFFSET(ac_syscall_event, args, 72);
AC_ABI_OFFSET(ac_fork_event, child_start_ns, 64);
AC_ABI_OFFSET(ac_fork_event, comm, 72);
AC_ABI_OFFSET(ac_exit_event, exit_code, 64);
AC_ABI_OFFSET(ac_exit_event, comm, 72);
AC_ABI_OFFSET(ac_net_event, op, 64);
AC_ABI_OFFSET(ac_net_event, family, 68);
AC_ABI_OFFSET(ac_net_event, port, 74);
AC_ABI_OFFSET(ac_net_event, unix_path_len, 78);
AC_ABI_OFFSET(ac_net_event, net_flags, 80);
AC_ABI_OFFSET(ac_net_event, addr, 88);
AC_ABI_OFFSET(ac_net_event, local_addr, 104);
AC_ABI_OFFSET(ac_net_event, unix_path, 120);
AC_ABI_OFFSET(ac_net_event, comm, 232);
AC_ABI_OFFSET(ac_net_rule_key, sandbox_lo, 4);
AC_ABI_OFFSET(ac_net_rule_key, addr, 12);
AC_ABI_OFFSET(ac_net_rule_value, deny_action, 4);
AC_ABI_OFFSET(ac_net_rule_value, ranges, 8);
AC_ABI_OFFSET(ac_net_port_range, proto, 4);
AC_ABI_OFFSET(ac_net_sandbox, flags, 4);
AC_ABI_OFFSET(ac_net_sandbox, dns_port, 8);
AC_ABI_OFFSET(ac_net_learned_value, ranges, 16);
AC_ABI_OFFSET(ac_net_unix_key, path, 8);
AC_ABI_OFFSET(ac_inode_key, ino, 8);
AC_ABI_OFFSET(ac_inode_key, dev, 16);
AC_ABI_OFFSET(ac_inode_rule, deny, 4);
AC_ABI_OFFSET(ac_lsm_probe, seen, 4);
AC_ABI_OFFSET(ac_lsm_deny_event, hook, 64);
AC_ABI_OFFSET(ac_lsm_deny_event, ino, 72);
AC_ABI_OFFSET(ac_lsm_deny_event, ret, 92);
AC_ABI_OFFSET(ac_lsm_deny_event, comm, 104);
AC_ABI_OFFSET(ac_lsm_deny_event, path, 120);
AC_ABI_OFFSET(ac_config, self_tgid, 4);
AC_ABI_OFFSET(ac_config, wakeup_bytes, 8);

#endif /* AGENTCAGE_ABI_H */
