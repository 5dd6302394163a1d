// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Network observation and enforcement.
 *
 * cgroup sock_addr programs run in the calling task's context *before* the kernel acts
 * on the address, on the kernel's own copy of it (after copy_from_user, so a racing
 * thread cannot swap it), and their verdict is final: returning 0 makes the syscall
 * fail with EPERM. That makes them the race-free place to both record and decide:
 *
 *   connect(2) -> __sys_connect_file -> inet_stream_connect / inet_dgram_connect
 *     -> sk_prot->pre_connect (tcp_v4_pre_connect, udp_pre_connect, ...)
 *     -> BPF_CGROUP_RUN_PROG_INET4_CONNECT                        cgroup/connect4|6
 *   sendto/sendmsg(2) with msg_name -> udp_sendmsg / udpv6_sendmsg
 *     -> BPF_CGROUP_RUN_PROG_UDP4_SENDMSG_LOCK                    cgroup/sendmsg4|6
 *   bind(2) -> inet_bind_sk -> BPF_CGROUP_RUN_PROG_INET_BIND_LOCK  cgroup/bind4|6
 *   unix connect/sendmsg -> unix_stream_connect / unix_dgram_sendmsg
 *     -> BPF_CGROUP_RUN_SA_PROG(.., CGROUP_UNIX_CONNECT|SENDMSG)  cgroup/connect_unix,
 *                                                                 cgroup/sendmsg_unix
 *   socket(2) -> inet_create -> BPF_CGROUP_RUN_PROG_INET_SOCK      cgroup/sock_create
 *
 * Where attached: once, on the cgroup2 root with BPF_F_ALLOW_MULTI (bpf_monitor.cc),
 * filtered with ac_net_tracked() (ac_tracked() semantics). A program attached to the sandbox cgroup would stop
 * applying to a process that moves itself to another cgroup; ac_tracked() also follows
 * the tgid inherited at fork, so leaving the cgroup does not leave the policy
 * (tests/privileged/net_test.cc LeavingTheSandboxCgroupDoesNotLeaveThePolicy). The cost
 * for every other process on the host is two hash lookups and a config read per
 * connect/bind/sendmsg with an address: measured with kernel.bpf_stats_enabled=1 on the
 * (shared, loaded) 2-core development VM, ~160 ns per untracked connect4 run, against
 * ~1-3 us for the UDP connect syscall itself; the stats' own clock reads included.
 * The network work of the one sys_exit program (syscall.bpf.c, net_exit.bpf.h) is a load
 * and a compare per syscall on top of its own filter.
 *
 * Raw and other non-TCP/UDP inet sockets never reach a sock_addr hook on send
 * (raw_sendmsg, ping_v4_sendmsg have none), so in a sandbox with a network policy their
 * creation is refused in cgroup/sock_create instead.
 *
 * Kill actions: older kernels accept bpf_send_signal() only in tracing programs (the
 * 6.18 development kernel takes it in cgroup programs too), so the hook marks the thread
 * and the sys_exit program (net_exit.bpf.h) sends SIGKILL on the way out of the same syscall,
 * before the process runs another user-space instruction. Same guarantee everywhere.
 *
 * Not covered by these hooks: socket families other than inet/inet6/unix (AF_PACKET,
 * AF_VSOCK, ...: no cgroup hook; the seccomp layer refuses them at socket(2) in every
 * profiled sandbox, see deny_socket_families in seccomp_policy.cc), and inbound traffic
 * (bind to port 0 is allowed; listen and accept are observed, not restricted).
 *
 * Listen and accept are observed, not enforced: listen in the inet_sock_set_state
 * tracepoint (process context, -> TCP_LISTEN), accept at the exit of accept/accept4,
 * where the new socket's peer is known.
 */
#include "common.bpf.h"
#include "net_exit.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AC_SUN_PATH_OFF 2 /* offsetof(struct sockaddr_un, sun_path) */

/* The uapi attach types the user side hard-codes (its linux/bpf.h may predate them). */
_Static_assert(BPF_CGROUP_UNIX_CONNECT == 49, "uapi BPF_CGROUP_UNIX_CONNECT");
_Static_assert(BPF_CGROUP_UNIX_SENDMSG == 50, "uapi BPF_CGROUP_UNIX_SENDMSG");

/* Allow rules of every sandbox: see struct ac_net_rule_key. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ac_net_rule_key);
	__type(value, struct ac_net_rule_value);
} ac_net_rules SEC(".maps");

/* Sandboxes with a network policy; without an entry a sandbox is unrestricted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ac_net_sandbox);
} ac_net_policy SEC(".maps");

/* Allowed unix socket names per sandbox (exact match). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ac_net_unix_key);
	__type(value, __u8);
} ac_net_unix SEC(".maps");

/* Addresses learned from allowed names: see struct ac_net_learned_key. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ac_net_learned_key);
	__type(value, struct ac_net_learned_value);
} ac_net_learned SEC(".maps");

/*
 * Where a DNS query redirected to agentcage's resolver was sent, per socket, so that the
 * answer's source (recvmsg) and the peer (getpeername) read as that address again: stub
 * resolvers (glibc's res_send, musl) drop answers that do not come from the server they
 * asked.
 */
struct ac_dns_orig {
	__u8 addr[16]; /* network order, as the process wrote it (IPv4 in addr[12..15]) */
	__u16 port;    /* network order */
	__u16 family;
	__u16 via_port; /* host order: the resolver's port the query went to */
	__u16 _pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ac_dns_orig);
} ac_dns_orig_map SEC(".maps");

/* See struct ac_name_orig. LRU: a connect whose check never ran must not fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ac_name_orig);
} ac_name_orig_map SEC(".maps");

/* ac_net_kill and ac_net_kills_pending: see net_exit.bpf.h. */

/*
 * Allowed datagrams already reported: (socket, destination). Unconnected UDP sends
 * pass the sendmsg hook once per datagram; a DNS or QUIC client would flood the ring
 * with identical records. An allowed send is reported the first time a socket sends to
 * a destination (again after LRU eviction); violations are always reported.
 */
struct ac_net_seen_key {
	__u64 cookie;  /* bpf_get_socket_cookie() */
	__u8 addr[16];
	__u16 port;
	__u16 _pad0;
	__u32 _pad1;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ac_net_seen_key);
	__type(value, __u8);
} ac_net_seen SEC(".maps");

/* Scratch for unix keys (120 bytes): keeps the hooks' stacks small. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ac_net_unix_key);
} ac_net_scratch SEC(".maps");

/* What one hook saw, before it is checked and reported. */
struct ac_net_attempt {
	__u8 op;          /* enum ac_net_op */
	__u16 family;     /* AF_* the process used */
	__u16 sock_type;
	__u16 protocol;
	__u16 port;       /* host order */
	__u32 flags;      /* enum ac_net_flags */
	__u8 addr[16];    /* network order, IPv4 in mapped form */
	__u8 rule_action; /* with AC_NET_F_RULE_ACTION: the deciding rule's action */
};

/*
 * ac_tracked() for the current task, with helpers instead of CO-RE pointer walks: the
 * sock_addr hooks run on every connect/bind/sendmsg on the host, and for the untracked
 * majority this (two hash lookups and a config read) is all they cost.
 */
static __always_inline int ac_net_tracked(__u64 *sandbox, __u32 *flags)
{
	return ac_tracked_ids(bpf_get_current_cgroup_id(), bpf_get_current_pid_tgid() >> 32, sandbox, flags);
}

static __always_inline __u8 ac_proto_bit(__u32 type, __u32 protocol)
{
	if (type == SOCK_STREAM && protocol == IPPROTO_TCP)
		return AC_NET_P_TCP;
	if (type == SOCK_DGRAM && protocol == IPPROTO_UDP)
		return AC_NET_P_UDP;
	return AC_NET_P_OTHER;
}

/* Emit an observation (AC_EV_NET) or a violation (AC_EV_NET_VIOLATION). */
static __always_inline void ac_net_emit(struct task_struct *task, __u64 sandbox, __u32 hflags,
					const struct ac_net_attempt *a, __u16 type, __u8 action,
					__u8 reason, const struct ac_net_sandbox *pol,
					const struct ac_net_unix_key *ukey, __u16 ulen)
{
	struct ac_net_event *ev = ac_reserve_class(sizeof(*ev), AC_CLASS_NET, sandbox);

	if (!ev)
		return;
	ac_fill_header(&ev->hdr, task, type, sizeof(*ev), sandbox, hflags);
	ev->op = a->op;
	ev->action = action;
	ev->reason = reason;
	ev->policy_action = (a->flags & AC_NET_F_RULE_ACTION) ? a->rule_action : pol ? (__u8)pol->default_action : 0;
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), task->comm);
	ev->family = a->family;
	ev->sock_type = a->sock_type;
	ev->protocol = a->protocol;
	ev->port = a->port;
	ev->net_flags = a->flags;
	__builtin_memcpy(ev->addr, a->addr, sizeof(ev->addr));
	if (ukey) {
		__builtin_memcpy(ev->unix_path, ukey->path, sizeof(ev->unix_path));
		ev->unix_path_len = ulen;
	}
	ac_submit(ev);
}

static __always_inline __u8 ac_net_violation_action(const struct ac_net_sandbox *pol, __u32 rule_action)
{
	if (pol->flags & AC_NET_S_AUDIT)
		return AC_NET_AUDIT;
	return (__u8)(rule_action ? rule_action : pol->default_action);
}

/*
 * Apply a violation's action and return the hook verdict (1 allow, 0 deny). Kill marks
 * the thread; the syscall's exit tracepoint delivers SIGKILL (see top of file).
 */
static __always_inline int ac_net_enforce(__u8 action)
{
	if (action == AC_NET_AUDIT || action == AC_NET_ALLOW)
		return 1;
	ac_stat_inc(AC_STAT_NET_DENIED);
	if (action == AC_NET_KILL) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		__u8 one = 1;
		if (bpf_map_update_elem(&ac_net_kill, &tid, &one, BPF_NOEXIST) == 0)
			__sync_fetch_and_add(&ac_net_kills_pending, 1);
		else if (!bpf_map_lookup_elem(&ac_net_kill, &tid))
			ac_stat_inc(AC_STAT_NET_KILL_FAILED);
	}
	return 0;
}

/*
 * Is (addr, port, proto) allowed for this sandbox? Longest prefix, then port ranges.
 * *deny_action gets the matched entry's action for what it does not allow (0: default);
 * *prefix the matched entry's prefix length.
 */
static __always_inline int ac_net_allowed(__u64 sandbox, const __u8 *addr, __u16 port, __u8 proto,
					  __u32 *deny_action, __u32 *prefix)
{
	struct ac_net_rule_key key = {};
	struct ac_net_rule_value *v;

	key.prefixlen = AC_NET_KEY_SANDBOX_BITS + 128;
	key.sandbox_lo = (__u32)sandbox;
	key.sandbox_hi = (__u32)(sandbox >> 32);
	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	v = bpf_map_lookup_elem(&ac_net_rules, &key);
	if (!v)
		return 0;
	*deny_action = v->deny_action;
	*prefix = v->prefix;
	for (int i = 0; i < AC_NET_MAX_PORT_RANGES; i++) {
		if (i >= v->count)
			break;
		if ((v->ranges[i].proto & proto) && port >= v->ranges[i].lo && port <= v->ranges[i].hi)
			return 1;
	}
	return 0;
}

/*
 * Spellings of the local host. The stack sends a connect or datagram to these somewhere
 * other than their face value, so matching only the spelling would let a wide rule
 * (0.0.0.0/0, ::/0 on 443) reach a host service the profile denies as 127.0.0.0/8 or ::1:
 *  - the unspecified address, 0.0.0.0, ::ffff:0.0.0.0 and :: (ip_route_connect and
 *    ip6_datagram/tcp_v6_connect turn it into the loopback address);
 *  - loopback aliases 127.0.0.2-127.255.255.255 (every one is local);
 *  - IPv4-compatible ::a.b.c.d (deprecated; reaches a.b.c.d over a sit tunnel).
 * Such an address must also be allowed as the address it reaches (*out): 127.0.0.1, ::1,
 * or ::ffff:a.b.c.d. A rule written for the spelling itself (a prefix inside
 * 127.0.0.0/8, or exactly 0.0.0.0 or ::) is taken as meant and decides alone.
 * Returns 0 when the spelling needs no second check.
 */
static __always_inline int ac_net_local_alias(const __u8 *addr, __u32 prefix, __u8 *out)
{
	__u32 w0, w1, w2, w3;

	__builtin_memcpy(&w0, &addr[0], 4);
	__builtin_memcpy(&w1, &addr[4], 4);
	__builtin_memcpy(&w2, &addr[8], 4);
	__builtin_memcpy(&w3, &addr[12], 4);
	if (w0 || w1)
		return 0;
	__builtin_memset(out, 0, 16);
	if (w2 == bpf_htonl(0xffff)) {
		if (w3 == bpf_htonl(0x7f000001))
			return 0;
		if (w3 == 0 ? prefix == 128 : (addr[12] != 127 || prefix >= 96 + 8))
			return 0;
		out[10] = 0xff;
		out[11] = 0xff;
		out[12] = 127;
		out[15] = 1;
		return 1;
	}
	if (w2)
		return 0;
	if (w3 == 0) {
		if (prefix == 128)
			return 0;
		out[15] = 1;
		return 1;
	}
	if (w3 == bpf_htonl(1))
		return 0;
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(&out[12], &w3, 4);
	return 1;
}

/*
 * Is the address one an allowed name resolved to, still within its TTL (plus grace), on
 * this port and protocol? Never for bind.
 */
static __always_inline int ac_net_learned_allows(__u64 sandbox, const struct ac_net_attempt *a, __u8 proto)
{
	struct ac_net_learned_key key = {};
	struct ac_net_learned_value *v;

	if (a->op == AC_NET_BIND)
		return 0;
	key.sandbox = sandbox;
	__builtin_memcpy(key.addr, a->addr, sizeof(key.addr));
	v = bpf_map_lookup_elem(&ac_net_learned, &key);
	if (!v || bpf_ktime_get_boot_ns() >= v->expires_ns)
		return 0;
	for (int i = 0; i < AC_NET_LEARNED_RANGES; i++) {
		if (i >= v->count)
			break;
		if ((v->ranges[i].proto & proto) && a->port >= v->ranges[i].lo && a->port <= v->ranges[i].hi)
			return 1;
	}
	return 0;
}

/*
 * The verdict for an inet attempt: allowed by its spelling and, for a connect or send to
 * a spelling of the local host, by the address it reaches (ac_net_local_alias). *reason
 * says which check refused. bind is taken at face value: it names a local address.
 */
static __always_inline int ac_net_decide(__u64 sandbox, const struct ac_net_attempt *a, __u8 proto,
					 __u32 *deny_action, __u8 *reason)
{
	__u8 alt[16];
	__u32 prefix = 0, alt_prefix = 0, alt_deny = 0;

	*reason = AC_NET_R_NO_RULE;
	if (!ac_net_allowed(sandbox, a->addr, a->port, proto, deny_action, &prefix)) {
		/*
		 * A learned address inside a deny/kill/audit prefix stays refused: a name of
		 * the allow list answered with a LAN or metadata address (DNS rebinding) does
		 * not open that range. It was resolved for itself, so it decides alone (no
		 * local-alias check: the guard never learns 0.0.0.0, :: or ::a.b.c.d).
		 */
		if (*deny_action == 0 && ac_net_learned_allows(sandbox, a, proto)) {
			*reason = 0;
			return 2;
		}
		return 0;
	}
	if (a->op == AC_NET_BIND || !ac_net_local_alias(a->addr, prefix, alt))
		return 1;
	if (ac_net_allowed(sandbox, alt, a->port, proto, &alt_deny, &alt_prefix))
		return 1;
	*deny_action = alt_deny;
	*reason = AC_NET_R_LOCAL_ALIAS;
	return 0;
}

/*
 * An allowed attempt, reported: a send once per socket and destination (a UDP client
 * sends many datagrams to one peer; the first says all the record needs), anything else
 * each time. Returns the verdict, 1.
 */
static __always_inline int ac_net_report_allowed(struct bpf_sock_addr *ctx, struct task_struct *task, __u64 sandbox,
						 __u32 hflags, const struct ac_net_attempt *a)
{
	if (a->op == AC_NET_SENDMSG) {
		struct ac_net_seen_key seen = {};
		__u8 one = 1;

		seen.cookie = bpf_get_socket_cookie(ctx);
		__builtin_memcpy(seen.addr, a->addr, sizeof(seen.addr));
		seen.port = a->port;
		if (bpf_map_lookup_elem(&ac_net_seen, &seen))
			return 1;
		bpf_map_update_elem(&ac_net_seen, &seen, &one, BPF_ANY);
	}
	ac_net_emit(task, sandbox, hflags, a, AC_EV_NET, AC_NET_ALLOW, 0, 0, 0, 0);
	return 1;
}

/*
 * A redirect with nowhere to go (no listener port for the family, no socket): refused and
 * reported as the default would; in audit mode refused all the same, since nothing could
 * answer or check it.
 */
static __always_inline int ac_redirect_refused(struct task_struct *task, __u64 sandbox, __u32 hflags,
					       struct ac_net_attempt *a, const struct ac_net_sandbox *pol)
{
	__u8 action = ac_net_violation_action(pol, 0);

	if (pol->flags & AC_NET_S_AUDIT)
		a->flags |= AC_NET_F_AUDIT_MODE;
	ac_net_emit(task, sandbox, hflags, a, AC_EV_NET_VIOLATION, action, AC_NET_R_NO_RULE, pol, 0, 0);
	return ac_net_enforce(action == AC_NET_AUDIT ? AC_NET_DENY : action);
}

/*
 * Rewrites the destination to agentcage's listener on loopback port `via` (127.0.0.1, ::1,
 * or ::ffff:127.0.0.1 for a v4-mapped destination of an IPv6 socket), keeping the
 * original in the socket's storage for recvmsg/getpeername. 0: no storage (refuse).
 */
static __always_inline int ac_redirect_to_loopback(struct bpf_sock_addr *ctx, struct bpf_sock *sk,
						   const struct ac_net_attempt *a, __u16 via, int mapped)
{
	struct ac_dns_orig *peer = bpf_sk_storage_get(&ac_dns_orig_map, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!peer)
		return 0;
	peer->family = a->family;
	peer->port = bpf_htons(a->port);
	peer->via_port = via;
	__builtin_memcpy(peer->addr, a->addr, sizeof(peer->addr));
	if (a->family == AF_INET6) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = mapped ? bpf_htonl(0xffff) : 0;
		ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
	} else {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	}
	ctx->user_port = bpf_htons(via);
	return 1;
}

/*
 * Every DNS query of a sandbox with domain rules, to whatever address it is sent, goes to
 * agentcage's resolver for that sandbox (127.0.0.1 or ::1 on pol->dns_port[6]): the
 * destination is rewritten here, in the kernel's copy, before the stack routes it. The
 * original goes into the socket's storage for recvmsg/getpeername. Reported once per
 * socket and destination, as an allowed send, with AC_NET_F_DNS_REDIRECT; the resolver
 * reports the query itself. No IPv6 port (no ::1 here): refused, as an IPv6 query
 * cannot be answered (a v4-mapped target is not allowed from the sendmsg6 hook).
 */
static __always_inline int ac_dns_redirect(struct bpf_sock_addr *ctx, struct task_struct *task, __u64 sandbox,
					   __u32 hflags, struct ac_net_attempt *a, const struct ac_net_sandbox *pol)
{
	struct bpf_sock *sk = ctx->sk;
	__u16 via = a->family == AF_INET6 ? pol->dns_port6 : pol->dns_port;

	a->flags |= AC_NET_F_DNS_REDIRECT;
	if (!via || !sk)
		return ac_redirect_refused(task, sandbox, hflags, a, pol);
	if (!ac_redirect_to_loopback(ctx, sk, a, via, 0))
		return ac_net_enforce(AC_NET_DENY); /* fail closed: the query must not leave */
	return ac_net_report_allowed(ctx, task, sandbox, hflags, a);
}

/*
 * A TCP connect to port 80 or 443 allowed only because the address was learned from an
 * allowed name: the address may serve other names too (a CDN, domain fronting), so the
 * connection goes to agentcage's name check for the sandbox (127.0.0.1 or ::1 on
 * pol->name_port[6]), which reads the TLS ClientHello's SNI or the HTTP Host header and
 * splices to the original destination (ac_name_orig, by socket cookie) only for a name
 * the profile allows. getpeername reads the original again (ac_dns_orig storage, as for
 * DNS). No IPv6 port: refused, fail closed.
 */
static __always_inline int ac_name_redirect(struct bpf_sock_addr *ctx, struct task_struct *task, __u64 sandbox,
					    __u32 hflags, struct ac_net_attempt *a, const struct ac_net_sandbox *pol)
{
	struct bpf_sock *sk = ctx->sk;
	struct ac_name_orig orig = {};
	__u32 w0, w1, w2;
	__builtin_memcpy(&w0, &a->addr[0], 4);
	__builtin_memcpy(&w1, &a->addr[4], 4);
	__builtin_memcpy(&w2, &a->addr[8], 4);
	/* An IPv6 socket's ::ffff:a.b.c.d goes to the IPv4 listener, as ::ffff:127.0.0.1. */
	int mapped = a->family == AF_INET6 && !w0 && !w1 && w2 == bpf_htonl(0xffff);
	__u16 via = a->family == AF_INET6 && !mapped ? pol->name_port6 : pol->name_port;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	a->flags |= AC_NET_F_NAME_CHECK;
	if (!via || !sk)
		return ac_redirect_refused(task, sandbox, hflags, a, pol);
	orig.sandbox = sandbox;
	__builtin_memcpy(orig.addr, a->addr, sizeof(orig.addr));
	orig.port = a->port;
	orig.family = a->family;
	if (bpf_map_update_elem(&ac_name_orig_map, &cookie, &orig, BPF_ANY) != 0 ||
	    !ac_redirect_to_loopback(ctx, sk, a, via, mapped))
		return ac_net_enforce(AC_NET_DENY); /* fail closed: unchecked, it must not leave */
	return ac_net_report_allowed(ctx, task, sandbox, hflags, a);
}

/*
 * recvmsg (UDP) and getpeername of a socket whose query was redirected: the resolver's
 * address reads as the server the process asked. Any other socket has no storage: one
 * lookup. Not filtered by ac_tracked(): the storage exists only on redirected sockets.
 */
static __always_inline int ac_dns_restore(struct bpf_sock_addr *ctx, int v6)
{
	struct bpf_sock *sk = ctx->sk;
	struct ac_dns_orig *orig;

	if (!sk)
		return 1;
	orig = bpf_sk_storage_get(&ac_dns_orig_map, sk, 0, 0);
	if (!orig || bpf_ntohs((__u16)ctx->user_port) != orig->via_port)
		return 1;
	if (v6) {
		__u32 w;

		/* ::1, or ::ffff:127.0.0.1 (a v4-mapped destination of an IPv6 socket). */
		int lo6 = !ctx->user_ip6[2] && ctx->user_ip6[3] == bpf_htonl(1);
		int lo4 = ctx->user_ip6[2] == bpf_htonl(0xffff) && ctx->user_ip6[3] == bpf_htonl(0x7f000001);
		if (ctx->user_ip6[0] || ctx->user_ip6[1] || !(lo6 || lo4))
			return 1;
		__builtin_memcpy(&w, &orig->addr[0], 4);
		ctx->user_ip6[0] = w;
		__builtin_memcpy(&w, &orig->addr[4], 4);
		ctx->user_ip6[1] = w;
		__builtin_memcpy(&w, &orig->addr[8], 4);
		ctx->user_ip6[2] = w;
		__builtin_memcpy(&w, &orig->addr[12], 4);
		ctx->user_ip6[3] = w;
	} else {
		__u32 ip;

		if (ctx->user_ip4 != bpf_htonl(0x7f000001))
			return 1;
		__builtin_memcpy(&ip, &orig->addr[12], 4);
		ctx->user_ip4 = ip;
	}
	ctx->user_port = orig->port;
	return 1;
}

SEC("cgroup/recvmsg4")
int cg__recvmsg4(struct bpf_sock_addr *ctx) { return ac_dns_restore(ctx, 0); }

SEC("cgroup/recvmsg6")
int cg__recvmsg6(struct bpf_sock_addr *ctx) { return ac_dns_restore(ctx, 1); }

SEC("cgroup/getpeername4")
int cg__getpeername4(struct bpf_sock_addr *ctx) { return ac_dns_restore(ctx, 0); }

SEC("cgroup/getpeername6")
int cg__getpeername6(struct bpf_sock_addr *ctx) { return ac_dns_restore(ctx, 1); }

/* An inet connect/sendmsg/bind: check, report, return the verdict. */
static __always_inline int ac_net_inet(struct bpf_sock_addr *ctx, struct ac_net_attempt *a)
{
	__u64 sandbox = 0;
	__u32 hflags = 0;

	if (!ac_net_tracked(&sandbox, &hflags))
		return 1;
	struct task_struct *task = bpf_get_current_task_btf();
	a->sock_type = ctx->type;
	a->protocol = ctx->protocol;
	a->port = bpf_ntohs((__u16)ctx->user_port);

	struct ac_net_sandbox *pol = sandbox ? bpf_map_lookup_elem(&ac_net_policy, &sandbox) : 0;
	/*
	 * bind to port 0 asks the kernel for an ephemeral port, as every client's implicit
	 * autobind does: it opens nothing another host can reach by a chosen port.
	 */
	__u32 rule_action = 0;
	__u8 reason = AC_NET_R_NO_RULE;
	__u8 proto = ac_proto_bit(a->sock_type, a->protocol);
	if (pol && pol->dns_port && a->port == 53 && a->op != AC_NET_BIND && proto != AC_NET_P_OTHER)
		return ac_dns_redirect(ctx, task, sandbox, hflags, a, pol);
	/* Not one `||` chain: that would turn ac_net_decide's 2 (learned) into 1. */
	int ok = !pol || (a->op == AC_NET_BIND && a->port == 0);
	if (!ok)
		ok = ac_net_decide(sandbox, a, proto, &rule_action, &reason);
	if (ok == 2)
		a->flags |= AC_NET_F_LEARNED;
	if (ok == 2 && pol->name_port && a->op == AC_NET_CONNECT && proto == AC_NET_P_TCP &&
	    (a->port == 443 || a->port == 80))
		return ac_name_redirect(ctx, task, sandbox, hflags, a, pol);
	if (ok)
		return ac_net_report_allowed(ctx, task, sandbox, hflags, a);
	__u8 action = ac_net_violation_action(pol, rule_action);
	if (pol->flags & AC_NET_S_AUDIT)
		a->flags |= AC_NET_F_AUDIT_MODE;
	if (rule_action) {
		a->flags |= AC_NET_F_RULE_ACTION;
		a->rule_action = (__u8)rule_action;
	}
	ac_net_emit(task, sandbox, hflags, a, AC_EV_NET_VIOLATION, action, reason, pol, 0, 0);
	return ac_net_enforce(action);
}

static __always_inline int ac_net_v4(struct bpf_sock_addr *ctx, __u8 op)
{
	struct ac_net_attempt a = {};
	__u32 ip = ctx->user_ip4;

	a.op = op;
	a.family = AF_INET;
	a.flags = AC_NET_F_V4;
	a.addr[10] = 0xff;
	a.addr[11] = 0xff;
	__builtin_memcpy(&a.addr[12], &ip, 4);
	return ac_net_inet(ctx, &a);
}

static __always_inline int ac_net_v6(struct bpf_sock_addr *ctx, __u8 op)
{
	struct ac_net_attempt a = {};
	__u32 w;

	a.op = op;
	a.family = AF_INET6;
	/* ctx fields must be read one 32-bit word at a time (verifier ctx rewrite). */
	w = ctx->user_ip6[0];
	__builtin_memcpy(&a.addr[0], &w, 4);
	w = ctx->user_ip6[1];
	__builtin_memcpy(&a.addr[4], &w, 4);
	w = ctx->user_ip6[2];
	__builtin_memcpy(&a.addr[8], &w, 4);
	w = ctx->user_ip6[3];
	__builtin_memcpy(&a.addr[12], &w, 4);
	return ac_net_inet(ctx, &a);
}

SEC("cgroup/connect4")
int cg__connect4(struct bpf_sock_addr *ctx) { return ac_net_v4(ctx, AC_NET_CONNECT); }

SEC("cgroup/connect6")
int cg__connect6(struct bpf_sock_addr *ctx) { return ac_net_v6(ctx, AC_NET_CONNECT); }

SEC("cgroup/sendmsg4")
int cg__sendmsg4(struct bpf_sock_addr *ctx) { return ac_net_v4(ctx, AC_NET_SENDMSG); }

SEC("cgroup/sendmsg6")
int cg__sendmsg6(struct bpf_sock_addr *ctx) { return ac_net_v6(ctx, AC_NET_SENDMSG); }

SEC("cgroup/bind4")
int cg__bind4(struct bpf_sock_addr *ctx) { return ac_net_v4(ctx, AC_NET_BIND); }

SEC("cgroup/bind6")
int cg__bind6(struct bpf_sock_addr *ctx) { return ac_net_v6(ctx, AC_NET_BIND); }

/*
 * Unix connect/sendmsg (kernels with the unix sock_addr hooks; the user side probes
 * for them and leaves these programs out otherwise). The name is read from the kernel
 * copy of the sockaddr. Abstract names (sun_path[0] == 0) become "@name", the same
 * spelling the allow list uses. Pathnames are matched exactly as the process gave them:
 * the policy lists absolute paths, so a relative name is denied (fails closed).
 */
/* __weak: absent before 6.2; only the unix hooks (6.7+, autoload off elsewhere) call it. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

static __always_inline int ac_net_unix_hook(struct bpf_sock_addr *ctx, __u8 op)
{
	struct ac_net_attempt a = {};
	__u64 sandbox = 0;
	__u32 hflags = 0, zero = 0;

	if (!ac_net_tracked(&sandbox, &hflags))
		return 1;
	struct task_struct *task = bpf_get_current_task_btf();
	struct ac_net_unix_key *key = bpf_map_lookup_elem(&ac_net_scratch, &zero);
	if (!key)
		return 1;
	__builtin_memset(key, 0, sizeof(*key));
	key->sandbox = sandbox;

	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	struct sockaddr *uaddr = sa->uaddr;
	__u32 len = sa->uaddrlen;
	__u32 n = len > AC_SUN_PATH_OFF ? len - AC_SUN_PATH_OFF : 0;
	char first = 0;

	a.op = op;
	a.family = AF_UNIX;
	a.sock_type = ctx->type;
	if (n > AC_UNIX_PATH_MAX) {
		n = AC_UNIX_PATH_MAX;
		a.flags |= AC_NET_F_UNIX_TRUNC;
	}
	bpf_probe_read_kernel(&first, 1, (char *)uaddr + AC_SUN_PATH_OFF);
	if (n > 0 && first == 0) {
		/* Abstract: "@" + the name bytes after the leading NUL. */
		a.flags |= AC_NET_F_UNIX_ABSTRACT;
		key->path[0] = '@';
		n -= 1;
		if (n > AC_UNIX_PATH_MAX - 1)
			n = AC_UNIX_PATH_MAX - 1;
		if (n > 0)
			bpf_probe_read_kernel(&key->path[1], n & 0x7f, (char *)uaddr + AC_SUN_PATH_OFF + 1);
		n += 1;
	} else if (n > 0) {
		/*
		 * Pathname: at most uaddrlen bytes (the kernel copy is not NUL-terminated yet:
		 * unix_mkname_bsd runs after this hook), cut at the first NUL as the kernel
		 * will, so bytes after it can neither hide nor alter the name.
		 */
		long r;

		if (n > AC_UNIX_PATH_MAX)
			n = AC_UNIX_PATH_MAX;
		/* Reads at most n bytes, stops at a NUL; the key was zeroed, so the rest is 0.
		 * n + 1 may reach into _pad[0] of the key, which is zero either way. */
		r = bpf_probe_read_kernel_str(key->path, n + 1, (char *)uaddr + AC_SUN_PATH_OFF);
		n = r > 0 ? r - 1 : 0;
	}

	struct ac_net_sandbox *pol = sandbox ? bpf_map_lookup_elem(&ac_net_policy, &sandbox) : 0;
	if (!pol || (pol->flags & AC_NET_S_UNIX_ANY) || bpf_map_lookup_elem(&ac_net_unix, key)) {
		ac_net_emit(task, sandbox, hflags, &a, AC_EV_NET, AC_NET_ALLOW, 0, 0, key, n);
		return 1;
	}
	__u8 action = ac_net_violation_action(pol, 0);
	if (pol->flags & AC_NET_S_AUDIT)
		a.flags |= AC_NET_F_AUDIT_MODE;
	ac_net_emit(task, sandbox, hflags, &a, AC_EV_NET_VIOLATION, action, AC_NET_R_UNIX_PATH, pol, key, n);
	return ac_net_enforce(action);
}

SEC("cgroup/connect_unix")
int cg__connect_unix(struct bpf_sock_addr *ctx) { return ac_net_unix_hook(ctx, AC_NET_CONNECT); }

SEC("cgroup/sendmsg_unix")
int cg__sendmsg_unix(struct bpf_sock_addr *ctx) { return ac_net_unix_hook(ctx, AC_NET_SENDMSG); }

/*
 * socket(2) of an inet socket that is neither TCP stream nor UDP datagram (raw, ping,
 * SCTP, MPTCP, UDP-Lite): refused in sandboxes with a network policy, because their
 * traffic does not pass the sock_addr hooks above. Runs after inet_create's own
 * CAP_NET_RAW check, so it also binds processes that kept the capability.
 */
SEC("cgroup/sock_create")
int cg__sock_create(struct bpf_sock *sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ac_net_attempt a = {};
	__u64 sandbox = 0;
	__u32 hflags = 0;

	if (ac_proto_bit(sk->type, sk->protocol) != AC_NET_P_OTHER)
		return 1;
	if (!ac_net_tracked(&sandbox, &hflags) || !sandbox)
		return 1;
	struct ac_net_sandbox *pol = bpf_map_lookup_elem(&ac_net_policy, &sandbox);
	if (!pol)
		return 1;
	a.op = AC_NET_SOCKET;
	a.family = sk->family;
	a.sock_type = sk->type;
	a.protocol = sk->protocol;
	__u8 action = ac_net_violation_action(pol, 0);
	if (pol->flags & AC_NET_S_AUDIT)
		a.flags |= AC_NET_F_AUDIT_MODE;
	ac_net_emit(task, sandbox, hflags, &a, AC_EV_NET_VIOLATION, action, AC_NET_R_SOCKET_TYPE, pol, 0, 0);
	return ac_net_enforce(action);
}

/*
 * inet_csk_listen_start -> inet_sk_state_store(sk, TCP_LISTEN) -> trace_inet_sock_set_state
 * Runs in the context of the task calling listen(2).
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp__inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct ac_net_attempt a = {};
	__u64 sandbox = 0;
	__u32 hflags = 0;

	if (newstate != TCP_LISTEN)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!ac_tracked(task, &sandbox, &hflags))
		return 0;
	a.op = AC_NET_LISTEN;
	a.sock_type = SOCK_STREAM;
	a.protocol = IPPROTO_TCP;
	a.family = ac_sk_end(sk, 0, a.addr, &a.port, &a.flags);
	ac_net_emit(task, sandbox, hflags, &a, AC_EV_NET, AC_NET_ALLOW, 0, 0, 0, 0);
	return 0;
}

/* accept/accept4 results and kill delivery: the sys_exit program, net_exit.bpf.h. */
