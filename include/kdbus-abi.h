/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kdbus v3 ABI (2015) as kdbusfs serves it: ioctl numbers, flag bits, item
 * types and the layout of every command struct. Written for kdbusfs from the
 * facts of that ABI so that its own C clients (test/clients, bench) build
 * without a kdbus kernel tree (lib/abi/kdbus.ts holds the same facts for the
 * server).
 * It declares what <linux/kdbus.h> declared: include one or the other.
 */
#ifndef KDBUSFS_KDBUS_ABI_H
#define KDBUSFS_KDBUS_ABI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define KDBUS_IOCTL_MAGIC 0x95

/* Connection ids with a meaning of their own. */
#define KDBUS_SRC_ID_KERNEL     (0)
#define KDBUS_DST_ID_NAME       (0)
#define KDBUS_MATCH_ID_ANY      (~0ULL)
#define KDBUS_DST_ID_BROADCAST  (~0ULL)
/* Set in a flags word by the kernel in a negotiation answer. */
#define KDBUS_FLAG_KERNEL       (1ULL << 63)

/* ---- item payloads ---- */

struct kdbus_notify_id_change {
	__u64 id;
	__u64 flags;
};

struct kdbus_notify_name_change {
	struct kdbus_notify_id_change old_id;
	struct kdbus_notify_id_change new_id;
	char name[0];
};

struct kdbus_creds {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
};

struct kdbus_pids {
	__u64 pid;
	__u64 tid;
	__u64 ppid;
};

struct kdbus_caps {
	__u32 last_cap;
	__u32 caps[0];
};

struct kdbus_audit {
	__u32 sessionid;
	__u32 loginuid;
};

struct kdbus_timestamp {
	__u64 seqnum;
	__u64 monotonic_ns;
	__u64 realtime_ns;
};

/* A payload vector: a sender's address on SEND, a pool offset on RECV. */
struct kdbus_vec {
	__u64 size;
	union {
		__u64 address;
		__u64 offset;
	};
};

struct kdbus_bloom_parameter {
	__u64 size;
	__u64 n_hash;
};

struct kdbus_bloom_filter {
	__u64 generation;
	__u64 data[0];
};

struct kdbus_memfd {
	__u64 start;
	__u64 size;
	int fd;
	__u32 __pad;
};

struct kdbus_name {
	__u64 flags;
	char name[0];
};

struct kdbus_policy_access {
	__u64 type;	/* enum kdbus_policy_access_type */
	__u64 access;	/* enum kdbus_policy_type */
	__u64 id;	/* uid or gid */
};

/* ---- items ---- */

enum kdbus_item_type {
	_KDBUS_ITEM_NULL = 0,
	_KDBUS_ITEM_USER_BASE = 1,
	KDBUS_ITEM_PAYLOAD_VEC = 1,
	KDBUS_ITEM_PAYLOAD_OFF = 2,
	KDBUS_ITEM_PAYLOAD_MEMFD = 3,
	KDBUS_ITEM_FDS = 4,
	KDBUS_ITEM_CANCEL_FD = 5,
	KDBUS_ITEM_BLOOM_PARAMETER = 6,
	KDBUS_ITEM_BLOOM_FILTER = 7,
	KDBUS_ITEM_BLOOM_MASK = 8,
	KDBUS_ITEM_DST_NAME = 9,
	KDBUS_ITEM_MAKE_NAME = 10,
	KDBUS_ITEM_ATTACH_FLAGS_SEND = 11,
	KDBUS_ITEM_ATTACH_FLAGS_RECV = 12,
	KDBUS_ITEM_ID = 13,
	KDBUS_ITEM_NAME = 14,

	/* metadata: type = 0x1000 + the bit number of its KDBUS_ATTACH_ flag */
	_KDBUS_ITEM_ATTACH_BASE = 0x1000,
	KDBUS_ITEM_TIMESTAMP = 0x1000,
	KDBUS_ITEM_CREDS = 0x1001,
	KDBUS_ITEM_PIDS = 0x1002,
	KDBUS_ITEM_AUXGROUPS = 0x1003,
	KDBUS_ITEM_OWNED_NAME = 0x1004,
	KDBUS_ITEM_TID_COMM = 0x1005,
	KDBUS_ITEM_PID_COMM = 0x1006,
	KDBUS_ITEM_EXE = 0x1007,
	KDBUS_ITEM_CMDLINE = 0x1008,
	KDBUS_ITEM_CGROUP = 0x1009,
	KDBUS_ITEM_CAPS = 0x100a,
	KDBUS_ITEM_SECLABEL = 0x100b,
	KDBUS_ITEM_AUDIT = 0x100c,
	KDBUS_ITEM_CONN_DESCRIPTION = 0x100d,

	_KDBUS_ITEM_POLICY_BASE = 0x2000,
	KDBUS_ITEM_POLICY_ACCESS = 0x2000,

	/* notifications the kernel (here: kdbusfs) sends */
	_KDBUS_ITEM_KERNEL_BASE = 0x8000,
	KDBUS_ITEM_NAME_ADD = 0x8000,
	KDBUS_ITEM_NAME_REMOVE = 0x8001,
	KDBUS_ITEM_NAME_CHANGE = 0x8002,
	KDBUS_ITEM_ID_ADD = 0x8003,
	KDBUS_ITEM_ID_REMOVE = 0x8004,
	KDBUS_ITEM_REPLY_TIMEOUT = 0x8005,
	KDBUS_ITEM_REPLY_DEAD = 0x8006,
};

/* size counts the 16-byte header and the payload, not the padding to 8 bytes. */
struct kdbus_item {
	__u64 size;
	__u64 type;
	union {
		__u8 data[0];
		__u32 data32[0];
		__u64 data64[0];
		char str[0];
		__u64 id;
		struct kdbus_vec vec;
		struct kdbus_creds creds;
		struct kdbus_pids pids;
		struct kdbus_audit audit;
		struct kdbus_caps caps;
		struct kdbus_timestamp timestamp;
		struct kdbus_name name;
		struct kdbus_bloom_parameter bloom_parameter;
		struct kdbus_bloom_filter bloom_filter;
		struct kdbus_memfd memfd;
		int fds[0];
		struct kdbus_notify_name_change name_change;
		struct kdbus_notify_id_change id_change;
		struct kdbus_policy_access policy_access;
	};
};

struct kdbus_item_list {
	__u64 size;
	struct kdbus_item items[0];
};

/* ---- messages ---- */

enum kdbus_msg_flags {
	KDBUS_MSG_EXPECT_REPLY = 1ULL << 0,
	KDBUS_MSG_NO_AUTO_START = 1ULL << 1,
	KDBUS_MSG_SIGNAL = 1ULL << 2,
};

enum kdbus_payload_type {
	KDBUS_PAYLOAD_KERNEL = 0,
	KDBUS_PAYLOAD_DBUS = 0x4442757344427573ULL, /* "DBusDBus" */
};

struct kdbus_msg {
	__u64 size;
	__u64 flags;
	__s64 priority;
	__u64 dst_id;
	__u64 src_id;
	__u64 payload_type;
	__u64 cookie;
	union {
		__u64 timeout_ns;	/* a call: absolute CLOCK_MONOTONIC deadline */
		__u64 cookie_reply;	/* a reply: the call's cookie */
	};
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

struct kdbus_msg_info {
	__u64 offset;
	__u64 msg_size;
	__u64 return_flags;
};

enum kdbus_send_flags {
	KDBUS_SEND_SYNC_REPLY = 1ULL << 0,
};

struct kdbus_cmd_send {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 kernel_msg_flags;
	__u64 return_flags;
	__u64 msg_address;
	struct kdbus_msg_info reply;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

enum kdbus_recv_flags {
	KDBUS_RECV_PEEK = 1ULL << 0,
	KDBUS_RECV_DROP = 1ULL << 1,
	KDBUS_RECV_USE_PRIORITY = 1ULL << 2,
};

enum kdbus_recv_return_flags {
	KDBUS_RECV_RETURN_INCOMPLETE_FDS = 1ULL << 0,
};

struct kdbus_cmd_recv {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	__s64 priority;
	__u64 dropped_msgs;
	struct kdbus_msg_info msg;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

struct kdbus_cmd_free {
	__u64 size;
	__u64 offset;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- policy ---- */

enum kdbus_policy_access_type {
	_KDBUS_POLICY_ACCESS_NULL = 0,
	KDBUS_POLICY_ACCESS_USER = 1,
	KDBUS_POLICY_ACCESS_GROUP = 2,
	KDBUS_POLICY_ACCESS_WORLD = 3,
};

enum kdbus_policy_type {
	KDBUS_POLICY_SEE = 0,
	KDBUS_POLICY_TALK = 1,
	KDBUS_POLICY_OWN = 2,
};

/* ---- connections ---- */

enum kdbus_hello_flags {
	KDBUS_HELLO_ACCEPT_FD = 1ULL << 0,
	KDBUS_HELLO_ACTIVATOR = 1ULL << 1,
	KDBUS_HELLO_POLICY_HOLDER = 1ULL << 2,
	KDBUS_HELLO_MONITOR = 1ULL << 3,
};

enum kdbus_attach_flags {
	KDBUS_ATTACH_TIMESTAMP = 1ULL << 0,
	KDBUS_ATTACH_CREDS = 1ULL << 1,
	KDBUS_ATTACH_PIDS = 1ULL << 2,
	KDBUS_ATTACH_AUXGROUPS = 1ULL << 3,
	KDBUS_ATTACH_NAMES = 1ULL << 4,
	KDBUS_ATTACH_TID_COMM = 1ULL << 5,
	KDBUS_ATTACH_PID_COMM = 1ULL << 6,
	KDBUS_ATTACH_EXE = 1ULL << 7,
	KDBUS_ATTACH_CMDLINE = 1ULL << 8,
	KDBUS_ATTACH_CGROUP = 1ULL << 9,
	KDBUS_ATTACH_CAPS = 1ULL << 10,
	KDBUS_ATTACH_SECLABEL = 1ULL << 11,
	KDBUS_ATTACH_AUDIT = 1ULL << 12,
	KDBUS_ATTACH_CONN_DESCRIPTION = 1ULL << 13,
	_KDBUS_ATTACH_ALL = (1ULL << 14) - 1,
	_KDBUS_ATTACH_ANY = ~0ULL,
};

struct kdbus_cmd_hello {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	__u64 attach_flags_send;
	__u64 attach_flags_recv;
	__u64 bus_flags;	/* out */
	__u64 id;		/* out: the unique id */
	__u64 pool_size;
	__u64 offset;		/* out: the connection's info in the pool */
	__u64 items_size;	/* out */
	__u8 id128[16];		/* out: the bus id */
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- buses and endpoints ---- */

enum kdbus_make_flags {
	KDBUS_MAKE_ACCESS_GROUP = 1ULL << 0,
	KDBUS_MAKE_ACCESS_WORLD = 1ULL << 1,
};

struct kdbus_cmd_make {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- names ---- */

enum kdbus_name_flags {
	KDBUS_NAME_REPLACE_EXISTING = 1ULL << 0,
	KDBUS_NAME_ALLOW_REPLACEMENT = 1ULL << 1,
	KDBUS_NAME_QUEUE = 1ULL << 2,
	KDBUS_NAME_IN_QUEUE = 1ULL << 3,
	KDBUS_NAME_ACTIVATOR = 1ULL << 4,
};

struct kdbus_cmd_name {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

struct kdbus_name_info {
	__u64 size;
	__u64 conn_flags;
	__u64 owner_id;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

struct kdbus_name_list {
	__u64 size;
	struct kdbus_name_info names[0];
};

enum kdbus_name_list_flags {
	KDBUS_NAME_LIST_UNIQUE = 1ULL << 0,
	KDBUS_NAME_LIST_NAMES = 1ULL << 1,
	KDBUS_NAME_LIST_ACTIVATORS = 1ULL << 2,
	KDBUS_NAME_LIST_QUEUED = 1ULL << 3,
};

struct kdbus_cmd_name_list {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	__u64 offset;		/* out */
	__u64 list_size;	/* out */
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- information ---- */

struct kdbus_info {
	__u64 size;
	__u64 id;
	__u64 flags;
	struct kdbus_item items[0];
};

struct kdbus_cmd_info {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	__u64 id;
	__u64 offset;		/* out */
	__u64 info_size;	/* out */
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

struct kdbus_cmd_update {
	__u64 size;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- matches ---- */

enum kdbus_cmd_match_flags {
	KDBUS_MATCH_REPLACE = 1ULL << 0,
};

struct kdbus_cmd_match {
	__u64 size;
	__u64 cookie;
	__u64 flags;
	__u64 kernel_flags;
	__u64 return_flags;
	struct kdbus_item items[0];
} __attribute__((aligned(8)));

/* ---- ioctls: type 0x95, number, and the size of the struct they carry ---- */

enum kdbus_ioctl_type {
	KDBUS_CMD_BUS_MAKE = _IOW(KDBUS_IOCTL_MAGIC, 0x00, struct kdbus_cmd_make),
	KDBUS_CMD_ENDPOINT_MAKE = _IOW(KDBUS_IOCTL_MAGIC, 0x10, struct kdbus_cmd_make),
	KDBUS_CMD_HELLO = _IOWR(KDBUS_IOCTL_MAGIC, 0x20, struct kdbus_cmd_hello),
	KDBUS_CMD_BYEBYE = _IO(KDBUS_IOCTL_MAGIC, 0x21),
	KDBUS_CMD_SEND = _IOWR(KDBUS_IOCTL_MAGIC, 0x30, struct kdbus_cmd_send),
	KDBUS_CMD_RECV = _IOWR(KDBUS_IOCTL_MAGIC, 0x31, struct kdbus_cmd_recv),
	KDBUS_CMD_FREE = _IOW(KDBUS_IOCTL_MAGIC, 0x32, struct kdbus_cmd_free),
	KDBUS_CMD_NAME_ACQUIRE = _IOWR(KDBUS_IOCTL_MAGIC, 0x40, struct kdbus_cmd_name),
	KDBUS_CMD_NAME_RELEASE = _IOW(KDBUS_IOCTL_MAGIC, 0x41, struct kdbus_cmd_name),
	KDBUS_CMD_NAME_LIST = _IOWR(KDBUS_IOCTL_MAGIC, 0x42, struct kdbus_cmd_name_list),
	KDBUS_CMD_CONN_INFO = _IOWR(KDBUS_IOCTL_MAGIC, 0x50, struct kdbus_cmd_info),
	KDBUS_CMD_CONN_UPDATE = _IOW(KDBUS_IOCTL_MAGIC, 0x51, struct kdbus_cmd_update),
	KDBUS_CMD_BUS_CREATOR_INFO = _IOWR(KDBUS_IOCTL_MAGIC, 0x52, struct kdbus_cmd_info),
	KDBUS_CMD_ENDPOINT_UPDATE = _IOW(KDBUS_IOCTL_MAGIC, 0x61, struct kdbus_cmd_update),
	KDBUS_CMD_MATCH_ADD = _IOW(KDBUS_IOCTL_MAGIC, 0x70, struct kdbus_cmd_match),
	KDBUS_CMD_MATCH_REMOVE = _IOW(KDBUS_IOCTL_MAGIC, 0x71, struct kdbus_cmd_match),
};

#endif
