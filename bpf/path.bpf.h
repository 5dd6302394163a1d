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

/*
 * Two ways to load a field during the walk. With AC_PATH_BTF (defined by the one object
 * on the syscall hot path, syscall.bpf.c) pointers are BTF-typed and fields are plain
 * loads the verifier protects with the exception table: no helper call per field. That
 * needs the bpf_rdonly_cast() kfunc to re-type addresses, and the libbpf 1.1 static
 * linker (Debian 12's bpftool) cannot link an extern kfunc referenced from two objects
 * ("failed to resolve size of underlying type"); so the other users (exec, rare) walk
 * with probe reads.
 */
#ifdef AC_PATH_BTF
/* kfunc (kernel >= 6.2): re-types a kernel address as a read-only BTF pointer. */
/* __weak: absent before 6.2, where the loader picks the compat program instead. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define AC_LD(p, field) ((p)->field)
#define AC_AS_MOUNT(addr) ((struct mount *)bpf_rdonly_cast((addr), bpf_core_type_id_kernel(struct mount)))
#else
#define AC_LD(p, field) BPF_CORE_READ(p, field)
#define AC_AS_MOUNT(addr) (addr)
#endif

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
	/*
	 * The pointers are BTF-typed (spilled in the caller's frame keep their type), so
	 * these are plain loads, not helper calls.
	 */
	struct dentry *d = c->d;
	struct vfsmount *vm = c->vm;
	struct mount *mnt = c->mnt;

	if (d == c->root_d && vm == c->root_m) {
		c->done = 1;
		return 1;
	}
	struct dentry *parent = AC_LD(d, d_parent);
	if (d == AC_LD(vm, mnt_root) || d == parent) {
		struct mount *pm = AC_LD(mnt, mnt_parent);
		if (pm == mnt || !pm) {
			c->done = 1; /* the namespace's root mount: the path is complete */
			return 1;
		}
		c->d = AC_LD(mnt, mnt_mountpoint);
		c->mnt = pm;
		c->vm = (struct vfsmount *)((char *)pm + bpf_core_field_offset(struct mount, mnt));
		return 0;
	}
	struct qstr name = AC_LD(d, d_name);
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

	c.root_d = task->fs->root.dentry; /* task is a BTF pointer for every caller */
	c.root_m = task->fs->root.mnt;
	c.d = AC_LD(p, dentry);
	c.vm = AC_LD(p, mnt);
	/* container_of() leaves a BTF pointer with a negative offset, which the verifier
	 * refuses to load through; re-typing the address as struct mount is allowed. */
	c.mnt = AC_AS_MOUNT(container_of(c.vm, struct mount, mnt));
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

#ifdef AC_PATH_BTF
/*
 * The struct file behind fd in the task's table, or NULL. The array slot is read with one
 * probe read (a variable index into a BTF array is not a plain load the verifier takes);
 * bpf_rdonly_cast() then makes the result a BTF pointer so the walk uses plain loads.
 */
static __always_inline struct file *ac_fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file **fds = fdt->fd;
	struct file *f = 0;

	if (fd < 0 || fd >= fdt->max_fds)
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	return bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
}
#else
/* Without the kfunc (kernels before 6.2): the same lookup with CO-RE reads. */
static __always_inline struct file *ac_fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file *f = 0;

	if (fd < 0 || fd >= max)
		return 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	return f;
}
#endif

#endif /* AGENTCAGE_PATH_BPF_H */
