/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Absolute paths walked in the kernel from a struct path, the way d_path() does it:
 * dentry -> d_parent up to the mount's root, then across to the mount point in the
 * parent mount (struct mount from container_of(vfsmount)), until the task's root or the
 * namespace's root mount. bpf_d_path() would do this for us but is only callable from
 * fentry/LSM programs, which this kernel refuses; so, like Tetragon's prepend_path(), we
 * walk a bounded number of components. Because the walk starts at the dentry the kernel
 * actually opened, "../", dirfd-relative paths, symlinks and /proc/self/root/... all come
 * out as the real path. Renames racing the walk can mix old and new names, as d_path
 * without rename_lock would; the walk never faults (every read is a probe read).
 */
#ifndef AGENTCAGE_PATH_BPF_H
#define AGENTCAGE_PATH_BPF_H

#include "common.bpf.h"

/* Components walked before giving up (the result is then marked truncated). */
#define AC_PATH_DEPTH 48
#define AC_NAME_MASK 255 /* NAME_MAX */

struct ac_walk_ctx {
	struct dentry *d;       /* current component */
	struct vfsmount *vm;    /* its mount */
	struct mount *mnt;      /* container_of(vm) */
	struct dentry *root_d;  /* the task's root: where d_path stops */
	struct vfsmount *root_m;
	int pos;                /* first byte written in the scratch buffer */
	int truncated;
	int done;
};

/*
 * One component per call, under bpf_loop(): the verifier checks this body once instead
 * of every unrolled iteration (a plain bounded loop with a mount-crossing branch per
 * step blows its 1M-instruction budget).
 */
static long ac_walk_step(__u32 index, void *vctx)
{
	struct ac_walk_ctx *c = vctx;
	__u32 zero = 0;
	struct ac_path_scratch *s = bpf_map_lookup_elem(&ac_scratch, &zero);

	if (!s)
		return 1;
	/* Locals, not c->x inside BPF_CORE_READ: that would CO-RE-relocate our own struct. */
	struct dentry *d = c->d;
	struct vfsmount *vm = c->vm;
	struct mount *mnt = c->mnt;

	if (d == c->root_d && vm == c->root_m) {
		c->done = 1;
		return 1;
	}
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (d == BPF_CORE_READ(vm, mnt_root) || d == parent) {
		struct mount *pm = BPF_CORE_READ(mnt, mnt_parent);
		if (pm == mnt || !pm) {
			c->done = 1; /* the namespace's root mount: the path is complete */
			return 1;
		}
		c->d = BPF_CORE_READ(mnt, mnt_mountpoint);
		c->mnt = pm;
		c->vm = (struct vfsmount *)((char *)pm + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}
	struct qstr name = BPF_CORE_READ(d, d_name);
	int len = name.len & AC_NAME_MASK;
	int pos = c->pos;
	if (len + 1 > pos) {
		c->truncated = 1;
		c->done = 1;
		return 1;
	}
	pos -= len;
	bpf_probe_read_kernel(s->buf + (pos & (AC_PATH_MAX - 1)), len, name.name);
	pos -= 1;
	s->buf[pos & (AC_PATH_MAX - 1)] = '/';
	c->pos = pos;
	c->d = parent;
	return 0;
}

/*
 * Walks `p` into the scratch buffer, ending at buf[AC_PATH_MAX - 1] = NUL. Returns the
 * offset of the first byte; sets *truncated when a component did not fit or the depth
 * bound was hit (the path then holds the deepest components that fit).
 */
static __always_inline int ac_walk(const struct path *p, struct task_struct *task, char *buf, int *truncated)
{
	struct ac_walk_ctx c = {};

	c.root_d = BPF_CORE_READ(task, fs, root.dentry);
	c.root_m = BPF_CORE_READ(task, fs, root.mnt);
	c.d = BPF_CORE_READ(p, dentry);
	c.vm = BPF_CORE_READ(p, mnt);
	c.mnt = container_of(c.vm, struct mount, mnt);
	c.pos = AC_PATH_MAX - 1;
	buf[AC_PATH_MAX - 1] = 0;
	bpf_loop(AC_PATH_DEPTH, ac_walk_step, &c, 0);
	if (!c.done || c.truncated)
		*truncated = 1;
	int pos = c.pos;
	if (pos == AC_PATH_MAX - 1) { /* the root itself */
		pos -= 1;
		buf[pos & (AC_PATH_MAX - 1)] = '/';
	}
	return pos;
}

/*
 * Resolves `p` into dst[AC_PATH_MAX]. Returns the bytes written including the NUL (0 when
 * the scratch buffer is unavailable) and sets *truncated as ac_walk() does.
 */
static __always_inline __u32 ac_resolve_path(const struct path *p, struct task_struct *task, char *dst, int *truncated)
{
	__u32 zero = 0;
	struct ac_path_scratch *s = bpf_map_lookup_elem(&ac_scratch, &zero);
	if (!s)
		return 0;
	int pos = ac_walk(p, task, s->buf, truncated) & (AC_PATH_MAX - 1);
	__u32 n = AC_PATH_MAX - pos;
	if (n > AC_PATH_MAX)
		n = AC_PATH_MAX;
	bpf_probe_read_kernel(dst, n, s->buf + pos);
	return n;
}

/* The struct file behind fd in the current task's table, or NULL. */
static __always_inline struct file *ac_fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

#endif /* AGENTCAGE_PATH_BPF_H */
