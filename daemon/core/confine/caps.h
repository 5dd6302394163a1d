// SPDX-License-Identifier: Apache-2.0
// Privileges of the sandboxed child: securebits, uid/gid switch, capability drop,
// no_new_privs. Child-side functions make raw system calls only (async-signal-safe).
#pragma once

#include <sys/types.h>

#include <vector>

namespace agentcage::core {

// /proc/sys/kernel/cap_last_cap (parent side; 63 when unreadable, so we over-drop).
int cap_last_cap();

// Lock the securebits so root is not special: NOROOT (exec as uid 0 grants nothing),
// NO_SETUID_FIXUP (uid changes neither grant nor need fix-ups), KEEP_CAPS off, all locked.
// Needs CAP_SETPCAP, so it runs before the drop. Returns 0 or errno.
int caps_lock_securebits();

// setgroups + setresgid + setresuid. `groups` may be empty (clears supplementary groups).
int switch_ids(uid_t uid, gid_t gid, const gid_t* groups, size_t ngroups);

// Empty the bounding, ambient, inheritable, permitted and effective sets.
int caps_drop_all(int last_cap);

// PR_SET_NO_NEW_PRIVS: execve can never grant privileges again (setuid bits, file caps).
int set_no_new_privs();

}  // namespace agentcage::core
