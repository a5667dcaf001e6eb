// The kdbus v3 ABI (include/uapi/linux/kdbus.h, limits.h): constants and
// struct layouts. Facts only; every offset is in bytes from the struct start.

export const KDBUS_IOCTL_MAGIC = 0x95;

/** The flags of an enum of single bits, 1 << 0 up, in their order there. */
function bits(count: number): bigint[] {
  return Array.from({ length: count }, (_, i) => 1n << BigInt(i));
}

export const KDBUS_SRC_ID_KERNEL = 0n;
export const KDBUS_DST_ID_NAME = 0n;
export const KDBUS_MATCH_ID_ANY = 0xffff_ffff_ffff_ffffn;
export const KDBUS_DST_ID_BROADCAST = 0xffff_ffff_ffff_ffffn;
export const KDBUS_FLAG_KERNEL = 1n << 63n;

// enum kdbus_item_type
export const ITEM = {
  PAYLOAD_VEC: 1,
  PAYLOAD_OFF: 2,
  PAYLOAD_MEMFD: 3,
  FDS: 4,
  CANCEL_FD: 5,
  BLOOM_PARAMETER: 6,
  BLOOM_FILTER: 7,
  BLOOM_MASK: 8,
  DST_NAME: 9,
  MAKE_NAME: 10,
  ATTACH_FLAGS_SEND: 11,
  ATTACH_FLAGS_RECV: 12,
  ID: 13,
  NAME: 14,
  // metadata items: type = ATTACH_BASE + bit number of the KDBUS_ATTACH_* flag
  TIMESTAMP: 0x1000,
  CREDS: 0x1001,
  PIDS: 0x1002,
  AUXGROUPS: 0x1003,
  OWNED_NAME: 0x1004,
  TID_COMM: 0x1005,
  PID_COMM: 0x1006,
  EXE: 0x1007,
  CMDLINE: 0x1008,
  CGROUP: 0x1009,
  CAPS: 0x100a,
  SECLABEL: 0x100b,
  AUDIT: 0x100c,
  CONN_DESCRIPTION: 0x100d,
  POLICY_ACCESS: 0x2000,
  NAME_ADD: 0x8000,
  NAME_REMOVE: 0x8001,
  NAME_CHANGE: 0x8002,
  ID_ADD: 0x8003,
  ID_REMOVE: 0x8004,
  REPLY_TIMEOUT: 0x8005,
  REPLY_DEAD: 0x8006,
} as const;
export const ITEM_ATTACH_BASE = 0x1000;

export const ITEM_HEADER_SIZE = 16;

// enum kdbus_msg_flags
export const [MSG_EXPECT_REPLY, MSG_NO_AUTO_START, MSG_SIGNAL] = bits(3);

// enum kdbus_payload_type
export const PAYLOAD_KERNEL = 0n;
export const PAYLOAD_DBUS = 0x4442757344427573n;

// enum kdbus_send_flags
export const SEND_SYNC_REPLY = 1n << 0n;

// enum kdbus_recv_flags / kdbus_recv_return_flags
export const [RECV_PEEK, RECV_DROP, RECV_USE_PRIORITY] = bits(3);
export const RECV_RETURN_INCOMPLETE_FDS = 1n << 0n;

// enum kdbus_policy_access_type / kdbus_policy_type
export const [POLICY_ACCESS_USER, POLICY_ACCESS_GROUP, POLICY_ACCESS_WORLD] = [1n, 2n, 3n];
export const [POLICY_SEE, POLICY_TALK, POLICY_OWN] = [0n, 1n, 2n];

// enum kdbus_hello_flags
export const [HELLO_ACCEPT_FD, HELLO_ACTIVATOR, HELLO_POLICY_HOLDER, HELLO_MONITOR] = bits(4);

// enum kdbus_attach_flags
export const ATTACH = {
  TIMESTAMP: 1n << 0n,
  CREDS: 1n << 1n,
  PIDS: 1n << 2n,
  AUXGROUPS: 1n << 3n,
  NAMES: 1n << 4n,
  TID_COMM: 1n << 5n,
  PID_COMM: 1n << 6n,
  EXE: 1n << 7n,
  CMDLINE: 1n << 8n,
  CGROUP: 1n << 9n,
  CAPS: 1n << 10n,
  SECLABEL: 1n << 11n,
  AUDIT: 1n << 12n,
  CONN_DESCRIPTION: 1n << 13n,
} as const;
export const ATTACH_ALL = (1n << 14n) - 1n;
export const ATTACH_ANY = 0xffff_ffff_ffff_ffffn;

// enum kdbus_make_flags
export const [MAKE_ACCESS_GROUP, MAKE_ACCESS_WORLD] = bits(2);

// enum kdbus_name_flags
export const [NAME_REPLACE_EXISTING, NAME_ALLOW_REPLACEMENT, NAME_QUEUE, NAME_IN_QUEUE, NAME_ACTIVATOR] = bits(5);

// enum kdbus_name_list_flags
export const [NAME_LIST_UNIQUE, NAME_LIST_NAMES, NAME_LIST_ACTIVATORS, NAME_LIST_QUEUED] = bits(4);

// enum kdbus_cmd_match_flags
export const MATCH_REPLACE = 1n << 0n;

// enum kdbus_ioctl_type: _IOC(dir, 0x95, nr, size)
const IOC_WRITE = 1; // userland writes, kernel reads
const IOC_READ = 2;
function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KDBUS_IOCTL_MAGIC << 8) | nr) >>> 0;
}
export const CMD = {
  BUS_MAKE: ioc(IOC_WRITE, 0x00, 32),
  ENDPOINT_MAKE: ioc(IOC_WRITE, 0x10, 32),
  HELLO: ioc(IOC_WRITE | IOC_READ, 0x20, 104),
  BYEBYE: ioc(0, 0x21, 0),
  SEND: ioc(IOC_WRITE | IOC_READ, 0x30, 72),
  RECV: ioc(IOC_WRITE | IOC_READ, 0x31, 72),
  FREE: ioc(IOC_WRITE, 0x32, 40),
  NAME_ACQUIRE: ioc(IOC_WRITE | IOC_READ, 0x40, 32),
  NAME_RELEASE: ioc(IOC_WRITE, 0x41, 32),
  NAME_LIST: ioc(IOC_WRITE | IOC_READ, 0x42, 48),
  CONN_INFO: ioc(IOC_WRITE | IOC_READ, 0x50, 56),
  CONN_UPDATE: ioc(IOC_WRITE, 0x51, 32),
  BUS_CREATOR_INFO: ioc(IOC_WRITE | IOC_READ, 0x52, 56),
  ENDPOINT_UPDATE: ioc(IOC_WRITE, 0x61, 32),
  MATCH_ADD: ioc(IOC_WRITE, 0x70, 40),
  MATCH_REMOVE: ioc(IOC_WRITE, 0x71, 40),
} as const;

// Struct layouts (offsets of u64 members unless noted)
export const CMD_MAKE = { size: 0, flags: 8, kernel_flags: 16, return_flags: 24, items: 32 } as const;
export const CMD_HELLO = {
  size: 0, flags: 8, kernel_flags: 16, return_flags: 24, attach_flags_send: 32,
  attach_flags_recv: 40, bus_flags: 48, id: 56, pool_size: 64, offset: 72,
  items_size: 80, id128: 88 /* 16 bytes */, items: 104,
} as const;
export const CMD_SEND = {
  size: 0, flags: 8, kernel_flags: 16, kernel_msg_flags: 24, return_flags: 32,
  msg_address: 40, reply_offset: 48, reply_msg_size: 56, reply_return_flags: 64, items: 72,
} as const;
export const CMD_RECV = {
  size: 0, flags: 8, kernel_flags: 16, return_flags: 24, priority: 32 /* s64 */,
  dropped_msgs: 40, msg_offset: 48, msg_size: 56, msg_return_flags: 64, items: 72,
} as const;
export const CMD_FREE = { size: 0, offset: 8, flags: 16, kernel_flags: 24, return_flags: 32, items: 40 } as const;
export const CMD_NAME = { size: 0, flags: 8, kernel_flags: 16, return_flags: 24, items: 32 } as const;
export const CMD_NAME_LIST = {
  size: 0, flags: 8, kernel_flags: 16, return_flags: 24, offset: 32, list_size: 40, items: 48,
} as const;
export const CMD_INFO = {
  size: 0, flags: 8, kernel_flags: 16, return_flags: 24, id: 32, offset: 40, info_size: 48, items: 56,
} as const;
export const CMD_UPDATE = { size: 0, flags: 8, kernel_flags: 16, return_flags: 24, items: 32 } as const;
export const CMD_MATCH = { size: 0, cookie: 8, flags: 16, kernel_flags: 24, return_flags: 32, items: 40 } as const;
export const MSG = {
  size: 0, flags: 8, priority: 16 /* s64 */, dst_id: 24, src_id: 32, payload_type: 40,
  cookie: 48, timeout_ns: 56 /* union with cookie_reply */, items: 64,
} as const;
export const INFO = { size: 0, id: 8, flags: 16, items: 24 } as const;
export const NAME_INFO = { size: 0, conn_flags: 8, owner_id: 16, items: 24 } as const;
export const NAME_LIST_HEADER = 8; // struct kdbus_name_list { u64 size; names[] }

export const SIZEOF_VEC = 16;            // { u64 size; u64 address|offset }
export const SIZEOF_MEMFD = 24;          // { u64 start; u64 size; int fd; u32 pad }
export const SIZEOF_BLOOM_PARAMETER = 16;
export const SIZEOF_BLOOM_FILTER = 8;    // { u64 generation; u64 data[] }
export const SIZEOF_POLICY_ACCESS = 24;
export const SIZEOF_NOTIFY_ID_CHANGE = 16;
export const SIZEOF_NOTIFY_NAME_CHANGE = 32;
export const SIZEOF_CREDS = 32;
export const SIZEOF_PIDS = 24;
export const SIZEOF_TIMESTAMP = 24;
export const SIZEOF_AUDIT = 8;

// limits.h
export const LIMITS = {
  MSG_MAX_SIZE: 8 * 1024,
  MSG_MAX_ITEMS: 128,
  CMD_MAX_SIZE: 8 * 1024,
  MSG_MAX_FDS: 253,
  MSG_MAX_PAYLOAD_VEC_SIZE: 2 * 1024 * 1024,
  BUS_BLOOM_MAX_SIZE: 4 * 1024,
  NAME_MAX_LEN: 255,
  SYSNAME_MAX_LEN: 63,
  MAKE_MAX_SIZE: 32 * 1024,
  HELLO_MAX_SIZE: 32 * 1024,
  UPDATE_MAX_SIZE: 32 * 1024,
  MATCH_MAX: 256,
  MATCH_MAX_SIZE: 32 * 1024,
  SEND_MAX_SIZE: 32 * 1024,
  RECV_MAX_SIZE: 32 * 1024,
  POLICY_MAX_SIZE: 32 * 1024,
  CONN_MAX_MSGS: 256,
  CONN_MAX_MSGS_UNACCOUNTED: 16,
  CONN_MAX_MSGS_PER_USER: 16,
  CONN_MAX_NAMES: 256,
  CONN_MAX_REQUESTS_PENDING: 128,
  USER_MAX_CONN: 1024,
  USER_MAX_BUSES: 16,
} as const;

/** KDBUS_ALIGN8, on full-size numbers (a bit mask would cut them to 32 bits). */
export const align8 = (n: number): number => Math.ceil(n / 8) * 8;

// Item payload layouts (offsets in bytes from the payload start)
export const MEMFD = { start: 0, size: 8, fd: 16 /* s32 */ } as const;
export const BLOOM_PARAMETER = { size: 0, n_hash: 8 } as const;
export const NOTIFY_ID_CHANGE = { id: 0, flags: 8 } as const;
export const NOTIFY_NAME_CHANGE = { old_id: 0, old_flags: 8, new_id: 16, new_flags: 24, name: 32 } as const;
/** struct kdbus_name (OWNED_NAME) */
export const NAME_ITEM = { flags: 0, name: 8 } as const;
/** struct kdbus_item_list (HELLO's answer) */
export const ITEM_LIST_HEADER = 8;
