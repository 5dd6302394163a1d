// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The sys_exit program of syscall.bpf.c for kernels without the bpf_rdonly_cast kfunc
 * (before 6.2, e.g. Debian 12's 6.1): the path walk uses CO-RE reads instead of BTF
 * loads. Slower per walked component, same records. BpfMonitor loads exactly one of the
 * two programs, chosen from the kernel's BTF.
 */
#define AC_SYSCALL_PROG tp_btf__sys_exit_compat
#include "syscall.bpf.c"
