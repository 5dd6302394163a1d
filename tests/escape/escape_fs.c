/* SPDX-License-Identifier: Apache-2.0 */
/* Filesystem escapes: reading secrets and writing outside the workspace by every path
 * trick we know. Usage: escape_fs <attack> <args...> */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "escape.h"

/* Open and read; any byte read (or even a successful open) is an escape. */
static void try_read(const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) blocked(path, errno);
  char buf[64];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0) blocked(path, errno);
  if (n == 0) {
    /* An empty read of a mask is still "not the secret": the runner plants non-empty
     * secrets, so only content counts as an escape. */
    fprintf(stderr, "opened %s but it is empty\n", path);
    exit(EXIT_BLOCKED);
  }
  escaped(path);
}

int main(int argc, char** argv) {
  if (argc < 3) usage("escape_fs <attack> <path> [path2]");
  const char* a = argv[1];
  const char* p = argv[2];
  const char* q = argc > 3 ? argv[3] : NULL;

  if (!strcmp(a, "read")) try_read(p);
  if (!strcmp(a, "symlink")) { /* ln -s <secret> <link in workspace>; read the link */
    if (!q) usage("symlink <target> <link>");
    if (symlink(p, q) != 0) blocked("symlink", errno);
    try_read(q);
  }
  if (!strcmp(a, "hardlink")) { /* ln <secret> <workspace>/x; read x */
    if (!q) usage("hardlink <target> <link>");
    if (link(p, q) != 0) blocked("link", errno);
    try_read(q);
  }
  if (!strcmp(a, "write")) { /* create or overwrite a file */
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) blocked(p, errno);
    if (write(fd, "pwned\n", 6) != 6) blocked("write", errno);
    escaped(p);
  }
  if (!strcmp(a, "append")) {
    int fd = open(p, O_WRONLY | O_APPEND);
    if (fd < 0) blocked(p, errno);
    if (write(fd, "pwned\n", 6) != 6) blocked("write", errno);
    escaped(p);
  }
  if (!strcmp(a, "rename")) {
    if (!q) usage("rename <from> <to>");
    expect_fail(rename(p, q), "rename");
  }
  if (!strcmp(a, "unlink")) expect_fail(unlink(p), "unlink");
  if (!strcmp(a, "chmod")) expect_fail(chmod(p, 0777), "chmod");
  if (!strcmp(a, "chown")) expect_fail(chown(p, 65534, 65534), "chown");
  if (!strcmp(a, "chmod-then-read")) { /* take the mask's mode bits back, then read */
    (void)chmod(p, 0644);
    try_read(p);
  }
  if (!strcmp(a, "umount")) expect_fail(umount2(p, MNT_DETACH), "umount2");
  if (!strcmp(a, "mount")) expect_fail(mount("none", p, "tmpfs", 0, ""), "mount(tmpfs)");
  if (!strcmp(a, "bind")) { /* bind the secret somewhere readable */
    if (!q) usage("bind <src> <dst>");
    expect_fail(mount(p, q, NULL, MS_BIND, NULL), "mount(MS_BIND)");
  }
  if (!strcmp(a, "open-by-handle")) { /* name_to_handle_at + open_by_handle_at on <p> */
    struct {
      struct file_handle fh;
      unsigned char buf[128];
    } h;
    h.fh.handle_bytes = sizeof h.buf;
    int mount_id;
    if (syscall(SYS_name_to_handle_at, AT_FDCWD, p, &h.fh, &mount_id, 0) != 0) {
      /* Without a handle from here, forge one: the syscall itself must be refused. */
      memset(&h, 0, sizeof h);
      h.fh.handle_bytes = 8;
      h.fh.handle_type = 1;
    }
    int mfd = open("/", O_PATH);
    expect_fail(syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY), "open_by_handle_at");
  }
  if (!strcmp(a, "control-rw")) { /* work inside the workspace <p> */
    char f[4096], g[4096], d[4096];
    snprintf(f, sizeof f, "%s/ctl.txt", p);
    snprintf(g, sizeof g, "%s/ctl2.txt", p);
    snprintf(d, sizeof d, "%s/ctl.dir", p);
    int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "ok\n", 3) != 3 || close(fd) != 0) { perror(f); return 1; }
    if (rename(f, g) != 0) { perror("rename"); return 1; }
    fd = open(g, O_RDONLY);
    char buf[8] = {0};
    if (fd < 0 || read(fd, buf, sizeof buf) != 3 || strcmp(buf, "ok\n")) { perror(g); return 1; }
    if (chmod(g, 0600) != 0) { perror("chmod"); return 1; }
    if (mkdir(d, 0755) != 0 || rmdir(d) != 0) { perror("mkdir/rmdir"); return 1; }
    if (unlink(g) != 0) { perror("unlink"); return 1; }
    return 0;
  }
  usage(a);
  return EXIT_USAGE;
}
