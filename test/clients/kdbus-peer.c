// kdbus-peer: one kdbus peer per process, for test/integration.test.ts.
//
// Written against the kdbus ABI only (include/kdbus-abi.h, built with -Iinclude).
// The process reads one command per line on stdin and answers each with
// exactly one line on stdout: "ok key=value ..." or "err ENAME key=value ...".
// It holds at most one control fd (a bus it made) and one connection.
//
// Payload bytes follow one pattern over the whole payload stream of a message
// (all vectors and memfds in order, NULL vectors excluded): byte k of the
// stream is pat(cookie, k). The receiver checks every byte it finds against
// that pattern and also reports an FNV-1a hash of the stream, so the test can
// compare what was sent with what arrived.
//
// Any token may spell a byte as \xNN (hex), so that names with bytes that
// are not text get through (e.g. "acquire org.caf\xE9.x": 0xE9 is a letter
// to the kernel's Latin-1 isalpha). Names in answers (recs=, notify=,
// dstname=, names=, desc=) show every byte that is not visible ASCII
// (0x21-0x7E), and '\', the same way.
//
// Commands (tokens separated by single spaces):
//   setuid UID GID                 drop to UID/GID (real, effective, saved)
//   make CONTROL NAME ACCESS BLOOMSIZE NHASH   BUS_MAKE; ACCESS: world|group|none
//   unmake                         close the control fd
//   hello BUS [POOLSIZE]           open BUS, HELLO, mmap the pool, read the
//                                  BLOOM_PARAMETER at hello.offset, FREE it
//   hello-unaligned BUS            HELLO from a pointer that is 4 mod 8, then
//                                  again from an aligned one on the same fd;
//                                  the fd is closed afterwards
//   match COOKIE RULE...           MATCH_ADD; RULE: id-add | id-remove |
//                                  bloom:all | bloom:HEX (mask word 0) |
//                                  name-add|name-remove|name-change[:NAME]
//   send DST OPT...                DST: a connection id or "bcast"; OPT:
//                                  cookie:N prio:N signal bloom:HEX vec:SIZE
//                                  null:SIZE memfd:SIZE[:START]
//                                  memfd-unsealed:SIZE memfd-someseals:SIZE
//                                  badaddr (msg_address on an unmapped page)
//   recv [peek] [drop] [prio:N] [wait:MS]      RECV (wait: poll() first)
//   drain                          RECV + FREE until EAGAIN
//   free OFFSET                    KDBUS_CMD_FREE
//   poll MS                        poll(POLLIN) on the connection
//   spam DST SIZE                  send to DST forever (answers once, first)
//   bye                            munmap and close the connection
//   exit
//
// Commands for names, policy, endpoints and calls (test/names-policy.test.ts,
// test/calls-quotas.test.ts):
//   creds RUID EUID SUID RGID EGID SGID [GROUP...]   setgroups, setresgid,
//                                  setresuid
//   connect BUS OPT...             HELLO with more control; OPT: pool:N
//                                  activator holder monitor noaccept
//                                  name:NAME policy:world:ACCESS
//                                  policy:user:UID:ACCESS policy:group:GID:ACCESS
//                                  (ACCESS: see|talk|own; NAME and POLICY_ACCESS
//                                  items in the order given); answers like hello
//   acquire NAME [replace] [allow] [queue]   NAME_ACQUIRE; answers the flags
//                                  the kernel wrote back
//   release NAME                   NAME_RELEASE
//   list FLAG[,FLAG...] [OPT...]   NAME_LIST (unique,names,activators,queued;
//                                  OPT: name:/policy: items, which kdbus refuses);
//                                  recs=OWNER:CONNFLAGS:NAME:NAMEFLAGS,... in
//                                  pool order ("-" for a record without name);
//                                  the slice is freed afterwards
//   info ID|NAME                   CONN_INFO by id or by well-known name
//   update OPT...                  CONN_UPDATE with name:/policy: items
//   epmake BUS NAME ACCESS OPT...  ENDPOINT_MAKE on a new fd opened on BUS
//                                  (kept open: the endpoint lives as long);
//                                  OPT: name:/policy: items
//   epclose                        close that fd
//   sigint                         install a SIGINT handler (SA_RESTART) that
//                                  counts and timestamps its runs
//   call DST OPT...                SEND with KDBUS_SEND_SYNC_REPLY (EXPECT_REPLY,
//                                  timeout expect:MS, default 5000); OPT as for
//                                  send plus cancel:MS (an eventfd written by
//                                  another thread after MS). Answers the reply
//                                  found at cmd->reply.offset like recv (then
//                                  FREEs it), elapsed=MS, and sigs=N sig_ms=MS
//                                  (handler runs during the call, and when the
//                                  last one ran, relative to the call's start)
//   sendmany DST N OPT...          N sends, the cookie counting up from cookie:C;
//                                  stops at the first error (err ENAME sent=K)
// More send OPTs: name:NAME (KDBUS_ITEM_DST_NAME; DST "name" is
// KDBUS_DST_ID_NAME), expect:MS (EXPECT_REPLY, timeout now + MS on
// CLOCK_MONOTONIC; expect-abs:NS sets timeout_ns as given), reply:COOKIE
// (cookie_reply), noauto (NO_AUTO_START).
// recv and call also answer creply= (cookie_reply / timeout_ns) and dstname=,
// and notify= for name and reply notifications:
// name-add|name-remove|name-change:OLDID:OLDFLAGS:NEWID:NEWFLAGS:NAME,
// reply-timeout:ITEMSIZE, reply-dead:ITEMSIZE.
//
// Commands for namespaces and metadata (test/containers.test.ts):
//   container UIDMAP GIDMAP        clone into new user, pid and mount
//                                  namespaces (MAP: IN:OUT:COUNT[,IN:OUT:COUNT]
//                                  written to the child's uid_map/gid_map by
//                                  this process, as root of the parent
//                                  namespace). The child becomes uid/gid 0
//                                  there, makes every mount private and goes on
//                                  reading commands (it is pid 1 of the new pid
//                                  namespace, killed when this process dies);
//                                  this process only waits for it and exits
//                                  with its status. The child answers
//                                  ok pid=P hostpid=H ppid=PP uid=U gid=G
//   bind SRC DST [rec]             mount(SRC, DST, MS_BIND [| MS_REC])
//   mknod PATH MAJOR MINOR MODE    a character device node, chmod'ed to MODE (octal)
//   open PATH                      open O_RDWR and close again
//   whoami                         pid= tid= ppid= uid=R,E,S gid=R,E,S
//                                  procself= (readlink /proc/self: the pid in
//                                  the pid namespace of the /proc mount)
//   recvmeta [wait:MS]             RECV (poll first with wait:), answer the
//                                  message's src= cookie= and its metadata
//                                  (see below), FREE the slice
//   infometa ID|NAME FLAGS         CONN_INFO with attach FLAGS; answers id=
//                                  flags= and the metadata of the info
//   creator                        BUS_CREATOR_INFO; answers id= and
//                                  name= (its MAKE_NAME item)
// More connect OPTs: recv:FLAGS (attach_flags_recv), send:FLAGS
// (attach_flags_send; default _KDBUS_ATTACH_ANY), desc:DESC (CONN_DESCRIPTION).
//
// Commands for refusals (test/security.test.ts):
//   mapw                           try to map the pool writable: answers
//                                  mmap=OK|ENAME (PROT_READ|PROT_WRITE,
//                                  MAP_SHARED) mprotect=OK|ENAME (a read-only
//                                  mapping made writable); nothing is written
//   scribble mmap|write [all]      overwrite the payload (every PAYLOAD_OFF
//                                  range) of the message at the head of the
//                                  queue (RECV with PEEK, slice freed), or with
//                                  "all" the whole pool, with 0x5a, through a
//                                  writable shared mapping of the pool or
//                                  pwrite(2) on the connection fd; answers
//                                  bytes=N, or err ENAME mmap|pwrite
//   reopen PATH                    open PATH as a second handle (e.g. the bus
//                                  file, or /proc/PID/fd/N of a connection),
//                                  mmap it before HELLO (premap=OK|ENAME,
//                                  never touched), HELLO with a 1 MiB pool,
//                                  map it and count the bytes outside the HELLO
//                                  slice that are not zero (nonzero=N); closed
//                                  again; err ENAME open|hello|mmap
// hello and connect also answer fd= (the connection's fd) and map=START-END
// (the pool mapping, hex, as in /proc/PID/maps).
// More connect OPTs: fake-creds:UID (a KDBUS_ITEM_CREDS with every uid and
// gid field UID), fake-pids:PID (KDBUS_ITEM_PIDS, pid=tid=PID, ppid 1),
// fake-seclabel:LABEL (KDBUS_ITEM_SECLABEL).
// More send OPTs: badvec:SIZE (a PAYLOAD_VEC on an unmapped page), kaddr
// (msg_address in kernel space), pooloff:SIZE:OFFSET (a PAYLOAD_OFF item,
// which only the kernel writes). More recv OPTs, and an info option: off:N
// (the command's offset set to N on the way in).
// Metadata answers: creds=UID,EUID,SUID,FSUID,GID,EGID,SGID,FSGID
// pids=PID,TID,PPID auxgroups=G,G... caps=LASTCAP:INH:PRM:EFF:BND (each set's
// 32-bit words in hex, low word first, joined by '.') exe=PATH comm=TID_COMM
// names=N,N... (OWNED_NAME) desc=CONN_DESCRIPTION, each "-" when absent
// (auxgroups=none: an AUXGROUPS item without groups), and metatypes=T,T...
// (hex types of every item after the fixed part).
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"

#define MAX_PARTS 64

static int ctl_fd = -1;
static int conn_fd = -1;
static uint8_t *pool;
static uint64_t pool_size;
static uint64_t my_id;
static uint64_t bloom_size = 8;
static int ep_fd = -1;

// ---- names as bytes (see the top: \xNN) ----

// Decodes the \xNN escapes of a token in place.
static void unescape(char *s) {
  char *o = s;
  for (const char *p = s; *p;) {
    if (p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) && isxdigit((unsigned char)p[3])) {
      char hex[3] = { p[2], p[3], 0 };
      *o++ = (char)strtoul(hex, NULL, 16);
      p += 4;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
}

// The string s (at most n bytes, up to its NUL) with every byte that is not
// visible ASCII, and '\', as \xNN; into out (cap >= 5), truncated to fit.
static const char *escaped(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && s[i]; i++) {
    unsigned char c = (unsigned char)s[i];
    int plain = c > 0x20 && c < 0x7f && c != '\\';
    if (o + (plain ? 1 : 4) >= cap) break;
    if (plain) out[o++] = (char)c;
    else o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
  }
  out[o] = 0;
  return out;
}

// ---- the payload pattern and stream hash ----

static inline uint8_t pat(uint64_t seed, uint64_t k) {
  return (uint8_t)(k * 131 + (k >> 8) * 7 + (k >> 16) * 13 + seed * 17 + 1);
}

struct stream {
  uint64_t seed, size, hash, bad_at;
  int bad;
};

static void stream_init(struct stream *s, uint64_t seed) {
  memset(s, 0, sizeof(*s));
  s->seed = seed;
  s->hash = 0xcbf29ce484222325ULL;
}

static void stream_feed(struct stream *s, const uint8_t *p, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    s->hash = (s->hash ^ p[i]) * 0x100000001b3ULL;
    if (!s->bad && p[i] != pat(s->seed, s->size + i)) {
      s->bad = 1;
      s->bad_at = s->size + i;
    }
  }
  s->size += n;
}

// ---- items ----

static struct kdbus_item *item_put(struct kdbus_item *it, uint64_t type, const void *data, uint64_t len) {
  it->size = ITEM_HDR + len;
  it->type = type;
  if (data) memcpy(it->data, data, len);
  else memset(it->data, 0, len);
  return ITEM_NEXT(it);
}

// ---- commands ----

static void cmd_setuid(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  uid_t uid = (uid_t)strtoul(av[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(av[2], NULL, 10);
  if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
    return answer("err %s setuid", ename(errno));
  answer("ok euid=%u egid=%u", (unsigned)geteuid(), (unsigned)getegid());
}

static void cmd_creds(char **av, int ac) {
  if (ac < 7) return answer("err EINVAL usage");
  uid_t ru = (uid_t)strtoul(av[1], NULL, 10), eu = (uid_t)strtoul(av[2], NULL, 10), su = (uid_t)strtoul(av[3], NULL, 10);
  gid_t rg = (gid_t)strtoul(av[4], NULL, 10), eg = (gid_t)strtoul(av[5], NULL, 10), sg = (gid_t)strtoul(av[6], NULL, 10);
  gid_t groups[64];
  int n = 0;
  for (int i = 7; i < ac && n < 64; i++) groups[n++] = (gid_t)strtoul(av[i], NULL, 10);
  if (setgroups((size_t)n, groups) < 0 || setresgid(rg, eg, sg) < 0 || setresuid(ru, eu, su) < 0)
    return answer("err %s creds", ename(errno));
  answer("ok uid=%u euid=%u gid=%u egid=%u groups=%d", (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
         (unsigned)getegid(), getgroups(0, NULL));
}

static void cmd_make(char **av, int ac) {
  if (ac < 6) return answer("err EINVAL usage");
  const char *name = av[2];
  uint64_t flags = 0;
  if (!strcmp(av[3], "world")) flags = KDBUS_MAKE_ACCESS_WORLD;
  else if (!strcmp(av[3], "group")) flags = KDBUS_MAKE_ACCESS_GROUP;
  struct kdbus_bloom_parameter bp = { strtoull(av[4], NULL, 0), strtoull(av[5], NULL, 0) };
  size_t nlen = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_make) + ALIGN8(ITEM_HDR + sizeof(bp)) + ALIGN8(ITEM_HDR + nlen);
  struct kdbus_cmd_make *cmd = calloc(1, size);
  cmd->size = size;
  cmd->flags = flags;
  struct kdbus_item *it = cmd->items;
  it = item_put(it, KDBUS_ITEM_BLOOM_PARAMETER, &bp, sizeof(bp));
  item_put(it, KDBUS_ITEM_MAKE_NAME, name, nlen);
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    free(cmd);
    return answer("err %s open", ename(errno));
  }
  if (ioctl(fd, KDBUS_CMD_BUS_MAKE, cmd) < 0) {
    int e = errno;
    close(fd);
    free(cmd);
    return answer("err %s bus_make", ename(e));
  }
  free(cmd);
  if (ctl_fd >= 0) close(ctl_fd);
  ctl_fd = fd;
  answer("ok name=%s", name);
}

static void cmd_unmake(void) {
  if (ctl_fd < 0) return answer("err EBADF no control fd");
  close(ctl_fd);
  ctl_fd = -1;
  answer("ok");
}

static int do_free(uint64_t off) {
  struct kdbus_cmd_free f;
  memset(&f, 0, sizeof(f));
  f.size = sizeof(f);
  f.offset = off;
  return ioctl(conn_fd, KDBUS_CMD_FREE, &f) < 0 ? errno : 0;
}

static void fill_hello(struct kdbus_cmd_hello *h, uint64_t psize) {
  memset(h, 0, sizeof(*h));
  h->size = sizeof(*h);
  h->flags = KDBUS_HELLO_ACCEPT_FD;
  h->attach_flags_send = _KDBUS_ATTACH_ANY;
  h->attach_flags_recv = 0;
  h->pool_size = psize;
}

// A growing buffer of items (each padded to 8 bytes).
struct ibuf {
  uint8_t *p;
  size_t len, cap;
};

static struct kdbus_item *ib_add(struct ibuf *b, uint64_t type, const void *data, size_t n) {
  size_t need = ALIGN8(ITEM_HDR + n);
  if (b->len + need > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need) cap *= 2;
    b->p = realloc(b->p, cap);
    b->cap = cap;
  }
  struct kdbus_item *it = (struct kdbus_item *)(b->p + b->len);
  memset(it, 0, need);
  it->size = ITEM_HDR + n;
  it->type = type;
  if (data) memcpy(it->data, data, n);
  b->len += need;
  return it;
}

// name:NAME and policy:KIND[:ID]:ACCESS options as NAME / POLICY_ACCESS
// items. Returns 1 if o was one of them, 0 if not, -1 if malformed.
static int policy_opt(struct ibuf *b, const char *o) {
  if (!strncmp(o, "name:", 5)) {
    ib_add(b, KDBUS_ITEM_NAME, o + 5, strlen(o + 5) + 1);
    return 1;
  }
  if (strncmp(o, "policy:", 7)) return 0;
  char kind[16] = "", rest[64] = "";
  const char *p = o + 7, *colon = strchr(p, ':');
  if (!colon || (size_t)(colon - p) >= sizeof(kind)) return -1;
  memcpy(kind, p, (size_t)(colon - p));
  snprintf(rest, sizeof(rest), "%s", colon + 1);
  struct kdbus_policy_access pa = { 0, 0, 0 };
  char *acc = rest;
  if (!strcmp(kind, "world")) pa.type = KDBUS_POLICY_ACCESS_WORLD;
  else {
    pa.type = !strcmp(kind, "user") ? KDBUS_POLICY_ACCESS_USER
            : !strcmp(kind, "group") ? KDBUS_POLICY_ACCESS_GROUP : 0;
    if (!pa.type) return -1;
    char *c2 = strchr(rest, ':');
    if (!c2) return -1;
    *c2 = 0;
    pa.id = strtoull(rest, NULL, 0);
    acc = c2 + 1;
  }
  if (!strcmp(acc, "see")) pa.access = KDBUS_POLICY_SEE;
  else if (!strcmp(acc, "talk")) pa.access = KDBUS_POLICY_TALK;
  else if (!strcmp(acc, "own")) pa.access = KDBUS_POLICY_OWN;
  else return -1;
  ib_add(b, KDBUS_ITEM_POLICY_ACCESS, &pa, sizeof(pa));
  return 1;
}

// The attach flags of the next HELLO (connect's recv:/send: options).
static uint64_t hello_attach_recv = 0, hello_attach_send = _KDBUS_ATTACH_ANY;

// HELLO on path with flags and extra items; maps the pool and answers.
static void do_hello(const char *path, uint64_t psize, uint64_t flags, const struct ibuf *items) {
  if (conn_fd >= 0) return answer("err EALREADY connected");
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  size_t isize = items ? items->len : 0;
  struct kdbus_cmd_hello *hp = calloc(1, sizeof(*hp) + isize);
  fill_hello(hp, psize);
  hp->size = sizeof(*hp) + isize;
  hp->flags = flags;
  hp->attach_flags_recv = hello_attach_recv;
  hp->attach_flags_send = hello_attach_send;
  if (isize) memcpy(hp->items, items->p, isize);
  if (ioctl(fd, KDBUS_CMD_HELLO, hp) < 0) {
    int e = errno;
    close(fd);
    free(hp);
    return answer("err %s hello", ename(e));
  }
  struct kdbus_cmd_hello h = *hp;
  free(hp);
  void *p = mmap(NULL, psize, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return answer("err %s mmap", ename(e));
  }
  conn_fd = fd;
  pool = p;
  pool_size = psize;
  my_id = h.id;
  // At hello.offset: a struct kdbus_item_list holding the BLOOM_PARAMETER.
  uint64_t bsize = 0, nhash = 0;
  int found = 0;
  if (h.offset + sizeof(uint64_t) <= psize) {
    const struct kdbus_item_list *list = (const void *)(pool + h.offset);
    uint64_t lsize = list->size;
    if (lsize <= psize - h.offset) {
      const uint8_t *end = (const uint8_t *)list + lsize;
      for (const struct kdbus_item *it = list->items;
           (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR;
           it = ITEM_NEXT(it)) {
        if (it->type == KDBUS_ITEM_BLOOM_PARAMETER && it->size >= ITEM_HDR + sizeof(struct kdbus_bloom_parameter)) {
          bsize = it->bloom_parameter.size;
          nhash = it->bloom_parameter.n_hash;
          found++;
        }
      }
    }
  }
  if (found) bloom_size = bsize;
  char uuid[33];
  for (int i = 0; i < 16; i++) sprintf(uuid + 2 * i, "%02x", h.id128[i]);
  int fe = do_free(h.offset);
  answer("ok id=%" PRIu64 " bus_flags=%" PRIu64 " offset=%" PRIu64 " items_size=%" PRIu64
         " bloom_items=%d bloom_size=%" PRIu64 " bloom_n_hash=%" PRIu64 " id128=%s free=%s fd=%d map=%lx-%lx",
         (uint64_t)h.id, (uint64_t)h.bus_flags, (uint64_t)h.offset, (uint64_t)h.items_size, found, bsize, nhash, uuid, fe ? ename(fe) : "0",
         fd, (unsigned long)(uintptr_t)pool, (unsigned long)((uintptr_t)pool + psize));
}

static void cmd_hello(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  uint64_t psize = ac > 2 ? strtoull(av[2], NULL, 0) : 16ULL << 20;
  do_hello(av[1], psize, KDBUS_HELLO_ACCEPT_FD, NULL);
}

static void cmd_connect(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  uint64_t psize = 16ULL << 20, flags = KDBUS_HELLO_ACCEPT_FD;
  uint64_t arecv = 0, asend = _KDBUS_ATTACH_ANY;
  struct ibuf b = { 0 };
  for (int i = 2; i < ac; i++) {
    const char *o = av[i];
    int r = policy_opt(&b, o);
    if (r < 0) {
      free(b.p);
      return answer("err EINVAL bad option %s", o);
    }
    if (r) continue;
    if (!strncmp(o, "pool:", 5)) psize = strtoull(o + 5, NULL, 0);
    else if (!strcmp(o, "activator")) flags |= KDBUS_HELLO_ACTIVATOR;
    else if (!strcmp(o, "holder")) flags |= KDBUS_HELLO_POLICY_HOLDER;
    else if (!strcmp(o, "monitor")) flags |= KDBUS_HELLO_MONITOR;
    else if (!strcmp(o, "noaccept")) flags &= ~(uint64_t)KDBUS_HELLO_ACCEPT_FD;
    else if (!strncmp(o, "recv:", 5)) arecv = strtoull(o + 5, NULL, 0);
    else if (!strncmp(o, "send:", 5)) asend = strtoull(o + 5, NULL, 0);
    else if (!strncmp(o, "fake-creds:", 11)) {
      uint32_t id = (uint32_t)strtoul(o + 11, NULL, 10);
      struct kdbus_creds c = { id, id, id, id, id, id, id, id };
      ib_add(&b, KDBUS_ITEM_CREDS, &c, sizeof(c));
    } else if (!strncmp(o, "fake-pids:", 10)) {
      uint64_t pid = strtoull(o + 10, NULL, 10);
      struct kdbus_pids pp = { pid, pid, 1 };
      ib_add(&b, KDBUS_ITEM_PIDS, &pp, sizeof(pp));
    } else if (!strncmp(o, "fake-seclabel:", 14)) {
      ib_add(&b, KDBUS_ITEM_SECLABEL, o + 14, strlen(o + 14) + 1);
    } else if (!strncmp(o, "desc:", 5)) {
      ib_add(&b, KDBUS_ITEM_CONN_DESCRIPTION, o + 5, strlen(o + 5) + 1);
    } else {
      free(b.p);
      return answer("err EINVAL bad option %s", o);
    }
  }
  hello_attach_recv = arecv;
  hello_attach_send = asend;
  do_hello(av[1], psize, flags, &b);
  hello_attach_recv = 0;
  hello_attach_send = _KDBUS_ATTACH_ANY;
  free(b.p);
}

static void cmd_hello_unaligned(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  struct kdbus_cmd_hello h;
  fill_hello(&h, 16ULL << 20);
  uint64_t *buf = calloc(1, sizeof(h) + 16);   // malloc memory is 16-aligned
  uint8_t *odd = (uint8_t *)buf + 4;            // 4 mod 8
  memcpy(odd, &h, sizeof(h));
  int r1 = ioctl(fd, KDBUS_CMD_HELLO, odd);
  int e1 = r1 < 0 ? errno : 0;
  free(buf);
  fill_hello(&h, 16ULL << 20);
  int r2 = ioctl(fd, KDBUS_CMD_HELLO, &h);
  int e2 = r2 < 0 ? errno : 0;
  close(fd);
  answer("%s %s aligned=%s aligned_id=%" PRIu64 "", e1 ? "err" : "ok", e1 ? ename(e1) : "0",
         e2 ? ename(e2) : "0", e2 ? 0 : (uint64_t)h.id);
}

static int name_rule(const char *r, uint64_t *type, const char **name) {
  static const struct { const char *p; uint64_t t; } kinds[] = {
    { "name-add", KDBUS_ITEM_NAME_ADD }, { "name-remove", KDBUS_ITEM_NAME_REMOVE },
    { "name-change", KDBUS_ITEM_NAME_CHANGE },
  };
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    size_t l = strlen(kinds[k].p);
    if (strncmp(r, kinds[k].p, l) || (r[l] && r[l] != ':')) continue;
    *type = kinds[k].t;
    *name = r[l] == ':' ? r + l + 1 : NULL;
    return 1;
  }
  return 0;
}

static int match_add(uint64_t cookie, char **rules, int n) {
  size_t size = sizeof(struct kdbus_cmd_match);
  uint64_t ntype;
  const char *nname;
  for (int i = 0; i < n; i++) {
    if (!strncmp(rules[i], "bloom:", 6)) size += ALIGN8(ITEM_HDR + bloom_size);
    else if (name_rule(rules[i], &ntype, &nname))
      size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_notify_name_change) + (nname ? strlen(nname) + 1 : 0));
    else size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_notify_id_change));
  }
  struct kdbus_cmd_match *m = calloc(1, size);
  m->size = size;
  m->cookie = cookie;
  struct kdbus_item *it = m->items;
  for (int i = 0; i < n; i++) {
    if (!strncmp(rules[i], "bloom:", 6)) {
      uint8_t *mask = calloc(1, bloom_size);
      if (!strcmp(rules[i] + 6, "all")) memset(mask, 0xff, bloom_size);
      else {
        uint64_t w = strtoull(rules[i] + 6, NULL, 16);
        memcpy(mask, &w, sizeof(w));
      }
      it = item_put(it, KDBUS_ITEM_BLOOM_MASK, mask, bloom_size);
      free(mask);
    } else if (name_rule(rules[i], &ntype, &nname)) {
      size_t l = sizeof(struct kdbus_notify_name_change) + (nname ? strlen(nname) + 1 : 0);
      struct kdbus_notify_name_change *nc = calloc(1, l);
      nc->old_id.id = KDBUS_MATCH_ID_ANY;
      nc->new_id.id = KDBUS_MATCH_ID_ANY;
      if (nname) memcpy(nc->name, nname, strlen(nname) + 1);
      it = item_put(it, ntype, nc, l);
      free(nc);
    } else {
      struct kdbus_notify_id_change c = { KDBUS_MATCH_ID_ANY, 0 };
      it = item_put(it, !strcmp(rules[i], "id-add") ? KDBUS_ITEM_ID_ADD : KDBUS_ITEM_ID_REMOVE, &c, sizeof(c));
    }
  }
  int r = ioctl(conn_fd, KDBUS_CMD_MATCH_ADD, m) < 0 ? errno : 0;
  free(m);
  return r;
}

static void cmd_match(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  int e = match_add(strtoull(av[1], NULL, 0), av + 2, ac - 2);
  if (e) return answer("err %s match_add", ename(e));
  answer("ok");
}

struct part {
  int kind;   // 0 vec, 1 null vec, 2 memfd (3, 4: unsealed, some seals), 5 badvec, 6 pooloff
  uint64_t size, start;
  uint8_t *buf;
  int fd;
};

// What a synchronous call (cmd_call) needs from send_msg.
struct send_ctl {
  int sync;                     // KDBUS_SEND_SYNC_REPLY
  int cancel_ms;                // >= 0: CANCEL_FD, written after this long
  uint64_t default_expect_ms;   // EXPECT_REPLY timeout when none was given
  struct kdbus_msg_info reply;  // cmd->reply after the ioctl
  int64_t t0, t1;               // CLOCK_MONOTONIC around the ioctl
};

struct canceller {
  int fd, ms;
};

static void *cancel_thread(void *arg) {
  struct canceller *c = arg;
  usleep((useconds_t)c->ms * 1000);
  uint64_t one = 1;
  if (write(c->fd, &one, sizeof(one)) < 0) perror("eventfd write");
  return NULL;
}

// A page that was mapped and is not any more: nothing lives there.
static void *unmapped_page(void) {
  void *hole = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(hole, 4096);
  return hole;
}

// Builds and sends one message; returns 0 or an errno. Fills *st with the
// stream that was sent.
static int send_msg(char **opts, int n, uint64_t dst, struct stream *st, struct send_ctl *ctl) {
  uint64_t cookie = 0, flags = 0, bloom_word = 0, cookie_reply = 0, expect_ms = 0;
  int64_t prio = 0;
  int has_bloom = 0, badaddr = 0, nparts = 0, err = 0, has_abs = 0;
  uint64_t abs_ns = 0;
  const char *dst_name = NULL;
  struct part parts[MAX_PARTS];
  for (int i = 0; i < n; i++) {
    char *o = opts[i];
    if (!strncmp(o, "cookie:", 7)) cookie = strtoull(o + 7, NULL, 0);
    else if (!strncmp(o, "prio:", 5)) prio = strtoll(o + 5, NULL, 0);
    else if (!strcmp(o, "signal")) flags |= KDBUS_MSG_SIGNAL;
    else if (!strcmp(o, "noauto")) flags |= KDBUS_MSG_NO_AUTO_START;
    else if (!strncmp(o, "expect:", 7)) { flags |= KDBUS_MSG_EXPECT_REPLY; expect_ms = strtoull(o + 7, NULL, 0); }
    else if (!strncmp(o, "expect-abs:", 11)) { flags |= KDBUS_MSG_EXPECT_REPLY; abs_ns = strtoull(o + 11, NULL, 0); has_abs = 1; }
    else if (!strncmp(o, "reply:", 6)) cookie_reply = strtoull(o + 6, NULL, 0);
    else if (!strncmp(o, "name:", 5)) dst_name = o + 5;
    else if (!strncmp(o, "cancel:", 7)) { if (ctl) ctl->cancel_ms = atoi(o + 7); }
    else if (!strncmp(o, "bloom:", 6)) { has_bloom = 1; bloom_word = strtoull(o + 6, NULL, 16); }
    else if (!strcmp(o, "badaddr")) badaddr = 1;
    else if (!strcmp(o, "kaddr")) badaddr = 2;
    else if (nparts < MAX_PARTS) {
      struct part *p = &parts[nparts];
      memset(p, 0, sizeof(*p));
      p->fd = -1;
      char *colon = strchr(o, ':');
      if (!colon) return EINVAL;
      p->size = strtoull(colon + 1, &colon, 0);
      if (*colon == ':') p->start = strtoull(colon + 1, NULL, 0);
      if (!strncmp(o, "vec:", 4)) p->kind = 0;
      else if (!strncmp(o, "null:", 5)) p->kind = 1;
      else if (!strncmp(o, "memfd:", 6)) p->kind = 2;
      else if (!strncmp(o, "memfd-unsealed:", 15)) p->kind = 3;
      else if (!strncmp(o, "memfd-someseals:", 16)) p->kind = 4;
      else if (!strncmp(o, "badvec:", 7)) p->kind = 5;
      else if (!strncmp(o, "pooloff:", 8)) p->kind = 6;
      else return EINVAL;
      nparts++;
    }
  }
  if (ctl && ctl->sync && !(flags & KDBUS_MSG_EXPECT_REPLY)) {
    flags |= KDBUS_MSG_EXPECT_REPLY;
    expect_ms = ctl->default_expect_ms;
  }
  stream_init(st, cookie);
  // Fill every part with its slice of the stream pattern.
  for (int i = 0; i < nparts && !err; i++) {
    struct part *p = &parts[i];
    if (p->kind == 1 || p->kind >= 5) continue;
    uint64_t total = p->start + p->size;
    p->buf = malloc(total ? total : 1);
    memset(p->buf, 0xee, p->start);
    for (uint64_t k = 0; k < p->size; k++) p->buf[p->start + k] = pat(cookie, st->size + k);
    stream_feed(st, p->buf + p->start, p->size);
    if (p->kind >= 2) {
      p->fd = memfd_create("kdbus-peer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
      if (p->fd < 0) { err = errno; break; }
      for (uint64_t w = 0; w < total;) {
        ssize_t r = write(p->fd, p->buf + w, total - w);
        if (r <= 0) { err = r < 0 ? errno : EIO; break; }
        w += (uint64_t)r;
      }
      int seals = p->kind == 2 ? (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
                : p->kind == 4 ? (F_SEAL_SHRINK | F_SEAL_GROW) : 0;
      if (!err && seals && fcntl(p->fd, F_ADD_SEALS, seals) < 0) err = errno;
    }
  }
  size_t size = sizeof(struct kdbus_msg);
  for (int i = 0; i < nparts; i++)
    size += ALIGN8(ITEM_HDR + (parts[i].kind <= 1 || parts[i].kind >= 5 ? sizeof(struct kdbus_vec) : sizeof(struct kdbus_memfd)));
  if (has_bloom) size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_bloom_filter) + bloom_size);
  if (dst_name) size += ALIGN8(ITEM_HDR + strlen(dst_name) + 1);
  struct kdbus_msg *m = calloc(1, size);
  if (!err) {
    m->size = size;
    m->flags = flags;
    m->priority = prio;
    m->dst_id = dst;
    m->payload_type = KDBUS_PAYLOAD_DBUS;
    m->cookie = cookie;
    if (flags & KDBUS_MSG_EXPECT_REPLY) m->timeout_ns = has_abs ? abs_ns : (uint64_t)now_ns() + expect_ms * 1000000ULL;
    else if (cookie_reply) m->cookie_reply = cookie_reply;
    struct kdbus_item *it = m->items;
    for (int i = 0; i < nparts; i++) {
      struct part *p = &parts[i];
      if (p->kind <= 1) {
        struct kdbus_vec v = { .size = p->size, .address = p->kind == 1 ? 0 : (uintptr_t)p->buf };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_VEC, &v, sizeof(v));
      } else if (p->kind == 5) {
        struct kdbus_vec v = { .size = p->size, .address = (uintptr_t)unmapped_page() };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_VEC, &v, sizeof(v));
      } else if (p->kind == 6) {
        struct kdbus_vec v = { .size = p->size, .offset = p->start };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_OFF, &v, sizeof(v));
      } else {
        struct kdbus_memfd mf = { .start = p->start, .size = p->size, .fd = p->fd };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_MEMFD, &mf, sizeof(mf));
      }
    }
    if (dst_name) it = item_put(it, KDBUS_ITEM_DST_NAME, dst_name, strlen(dst_name) + 1);
    if (has_bloom) {
      size_t blen = sizeof(struct kdbus_bloom_filter) + bloom_size;
      struct kdbus_bloom_filter *bf = calloc(1, blen);
      bf->generation = 0;
      bf->data[0] = bloom_word;
      item_put(it, KDBUS_ITEM_BLOOM_FILTER, bf, blen);
      free(bf);
    }
    int cancel = ctl && ctl->sync && ctl->cancel_ms >= 0;
    size_t csize = sizeof(struct kdbus_cmd_send) + (cancel ? ALIGN8(ITEM_HDR + sizeof(int)) : 0);
    struct kdbus_cmd_send *cmd = calloc(1, csize);
    cmd->size = csize;
    cmd->msg_address = (uintptr_t)m;
    if (ctl && ctl->sync) cmd->flags = KDBUS_SEND_SYNC_REPLY;
    struct canceller canc = { -1, 0 };
    pthread_t thr;
    int have_thr = 0;
    if (cancel) {
      canc.fd = eventfd(0, EFD_CLOEXEC);
      canc.ms = ctl->cancel_ms;
      if (canc.fd < 0) err = errno;
      else {
        // struct kdbus_item is larger than this item: write its fields by hand
        uint64_t hdr[2] = { ITEM_HDR + sizeof(int), KDBUS_ITEM_CANCEL_FD };
        uint8_t *raw = (uint8_t *)cmd + sizeof(struct kdbus_cmd_send);
        memcpy(raw, hdr, sizeof(hdr));
        memcpy(raw + ITEM_HDR, &canc.fd, sizeof(int));
        if (pthread_create(&thr, NULL, cancel_thread, &canc) == 0) have_thr = 1;
        else err = EAGAIN;
      }
    }
    if (badaddr == 1) cmd->msg_address = (uintptr_t)unmapped_page();
    else if (badaddr == 2) cmd->msg_address = 0xffff888000000000ULL;   // the kernel's direct map
    if (!err) {
      if (ctl) ctl->t0 = now_ns();
      if (ioctl(conn_fd, KDBUS_CMD_SEND, cmd) < 0) err = errno;
      if (ctl) {
        ctl->t1 = now_ns();
        ctl->reply = cmd->reply;
      }
    }
    if (have_thr) pthread_join(thr, NULL);
    if (canc.fd >= 0) close(canc.fd);
    free(cmd);
  }
  free(m);
  for (int i = 0; i < nparts; i++) {
    free(parts[i].buf);
    if (parts[i].fd >= 0) close(parts[i].fd);
  }
  return err;
}

static uint64_t parse_dst(const char *s) {
  if (!strcmp(s, "name")) return KDBUS_DST_ID_NAME;
  return !strcmp(s, "bcast") ? KDBUS_DST_ID_BROADCAST : strtoull(s, NULL, 0);
}

static void cmd_send(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct stream st;
  int e = send_msg(av + 2, ac - 2, parse_dst(av[1]), &st, NULL);
  if (e) return answer("err %s send", ename(e));
  answer("ok stream=%" PRIu64 ":%016" PRIx64, st.size, st.hash);
}

struct got {
  uint64_t off, slice, msize, src, dst, cookie, flags, ptype, creply;
  int64_t prio;
  char notify[1200];
  char dstname[1024];
  char parts[1024];
  char types[512];
  struct stream st;
  int oob;
};

// Parses the message at off in the pool; payload bytes are checked against
// the pattern seeded with the message's cookie.
static void parse_msg(uint64_t off, struct got *g) {
  const struct kdbus_msg *m = (const void *)(pool + off);
  g->msize = m->size;
  g->src = m->src_id;
  g->dst = m->dst_id;
  g->cookie = m->cookie;
  g->flags = m->flags;
  g->ptype = m->payload_type;
  g->prio = m->priority;
  g->creply = m->cookie_reply;
  g->notify[0] = g->parts[0] = g->types[0] = g->dstname[0] = 0;
  stream_init(&g->st, m->cookie);
  if (m->size < sizeof(*m) || m->size > pool_size - off) {
    g->oob = 1;
    return;
  }
  const uint8_t *end = (const uint8_t *)m + m->size;
  size_t pl = 0, tl = 0;
  for (const struct kdbus_item *it = m->items;
       (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR && (const uint8_t *)it + it->size <= end;
       it = ITEM_NEXT(it)) {
    tl += snprintf(g->types + tl, sizeof(g->types) - tl, "%s%" PRIx64, tl ? "," : "", (uint64_t)it->type);
    if (tl >= sizeof(g->types)) tl = sizeof(g->types) - 1;
    switch (it->type) {
    case KDBUS_ITEM_PAYLOAD_OFF: {
      uint64_t o = it->vec.offset, n = it->vec.size;
      if (o == ~0ULL) {
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%snull:%" PRIu64, pl ? "," : "", n);
      } else if (o > pool_size || n > pool_size - o) {
        g->oob = 1;
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%soob:%" PRIu64, pl ? "," : "", n);
      } else {
        stream_feed(&g->st, pool + o, n);
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%soff:%" PRIu64, pl ? "," : "", n);
      }
      break;
    }
    case KDBUS_ITEM_PAYLOAD_MEMFD: {
      uint64_t n = it->memfd.size, s = it->memfd.start;
      int fd = it->memfd.fd;
      uint8_t *b = malloc(n ? n : 1);
      ssize_t r = fd >= 0 ? pread(fd, b, n, (off_t)s) : -1;
      if (r == (ssize_t)n) stream_feed(&g->st, b, n);
      else g->oob = 1;
      free(b);
      if (fd >= 0) close(fd);
      pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%smemfd:%" PRIu64, pl ? "," : "", n);
      break;
    }
    case KDBUS_ITEM_ID_ADD:
    case KDBUS_ITEM_ID_REMOVE:
      snprintf(g->notify, sizeof(g->notify), "%s:%" PRIu64 ":%" PRIu64,
               it->type == KDBUS_ITEM_ID_ADD ? "id-add" : "id-remove",
               (uint64_t)it->id_change.id, (uint64_t)it->id_change.flags);
      break;
    case KDBUS_ITEM_NAME_ADD:
    case KDBUS_ITEM_NAME_REMOVE:
    case KDBUS_ITEM_NAME_CHANGE: {
      const struct kdbus_notify_name_change *nc = &it->name_change;
      size_t max = it->size >= ITEM_HDR + sizeof(*nc) ? it->size - ITEM_HDR - sizeof(*nc) : 0;
      char esc[4 * 256];
      snprintf(g->notify, sizeof(g->notify), "%s:%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%s",
               it->type == KDBUS_ITEM_NAME_ADD ? "name-add" : it->type == KDBUS_ITEM_NAME_REMOVE ? "name-remove" : "name-change",
               (uint64_t)nc->old_id.id, (uint64_t)nc->old_id.flags, (uint64_t)nc->new_id.id, (uint64_t)nc->new_id.flags,
               escaped(nc->name, max, esc, sizeof(esc)));
      break;
    }
    case KDBUS_ITEM_REPLY_TIMEOUT:
    case KDBUS_ITEM_REPLY_DEAD:
      snprintf(g->notify, sizeof(g->notify), "%s:%" PRIu64,
               it->type == KDBUS_ITEM_REPLY_TIMEOUT ? "reply-timeout" : "reply-dead", (uint64_t)it->size);
      break;
    case KDBUS_ITEM_DST_NAME:
      escaped(it->str, it->size - ITEM_HDR, g->dstname, sizeof(g->dstname));
      break;
    default:
      break;
    }
    if (pl >= sizeof(g->parts)) pl = sizeof(g->parts) - 1;
  }
}

// Answers "<head> ..." describing the message at off (as recv does); extra
// is appended (starting with a space, or empty).
static void answer_msg(const char *head, uint64_t off, uint64_t slice, const char *extra) {
  struct got g;
  memset(&g, 0, sizeof(g));
  parse_msg(off, &g);
  char dst[24];
  if (g.dst == KDBUS_DST_ID_BROADCAST) strcpy(dst, "bcast");
  else snprintf(dst, sizeof(dst), "%" PRIu64, g.dst);
  answer("%s off=%" PRIu64 " msize=%" PRIu64 " slice=%" PRIu64 " src=%" PRIu64 " dst=%s cookie=%" PRIu64
         " prio=%" PRId64 " flags=%" PRIu64 " ptype=%s notify=%s parts=%s types=%s stream=%" PRIu64 ":%016" PRIx64
         " pattern=%s%.0" PRIu64 " inpool=%s creply=%" PRIu64 " dstname=%s%s",
         head, off, g.msize, slice, g.src, dst, g.cookie, g.prio, g.flags,
         g.ptype == KDBUS_PAYLOAD_KERNEL ? "kernel" : g.ptype == KDBUS_PAYLOAD_DBUS ? "dbus" : "other",
         g.notify[0] ? g.notify : "-", g.parts[0] ? g.parts : "-", g.types[0] ? g.types : "-",
         g.st.size, g.st.hash, g.st.bad ? "bad@" : "ok", g.st.bad ? g.st.bad_at : 0,
         g.oob ? "no" : "yes", g.creply, g.dstname[0] ? g.dstname : "-", extra);
}

static int wait_in(int ms) {
  struct pollfd p = { conn_fd, POLLIN, 0 };
  return poll(&p, 1, ms);
}

static void cmd_recv(char **av, int ac) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  for (int i = 1; i < ac; i++) {
    if (!strcmp(av[i], "peek")) r.flags |= KDBUS_RECV_PEEK;
    else if (!strcmp(av[i], "drop")) r.flags |= KDBUS_RECV_DROP;
    else if (!strncmp(av[i], "prio:", 5)) {
      r.flags |= KDBUS_RECV_USE_PRIORITY;
      r.priority = !strcmp(av[i] + 5, "max") ? INT64_MAX : strtoll(av[i] + 5, NULL, 0);
    } else if (!strncmp(av[i], "wait:", 5)) wait_in(atoi(av[i] + 5));
    else if (!strncmp(av[i], "off:", 4)) r.msg.offset = strtoull(av[i] + 4, NULL, 0);
  }
  if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) {
    int e = errno;
    return answer("err %s dropped=%" PRIu64, ename(e), (uint64_t)r.dropped_msgs);
  }
  if (r.flags & KDBUS_RECV_DROP) return answer("ok dropped=1");
  if (r.msg.offset >= pool_size) return answer("err ERANGE off=%" PRIu64, (uint64_t)r.msg.offset);
  answer_msg("ok", r.msg.offset, r.msg.msg_size, "");
}

static void cmd_drain(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  unsigned n = 0, bad = 0;
  uint64_t last_cookie = 0, last_src = 0;
  for (;;) {
    struct kdbus_cmd_recv r;
    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) {
      int e = errno;
      if (e == EAGAIN) break;
      return answer("err %s n=%u", ename(e), n);
    }
    struct got g;
    memset(&g, 0, sizeof(g));
    parse_msg(r.msg.offset, &g);
    if (g.st.bad || g.oob) bad++;
    last_cookie = g.cookie;
    last_src = g.src;
    n++;
    int fe = do_free(r.msg.offset);
    if (fe) return answer("err %s free n=%u", ename(fe), n);
  }
  answer("ok n=%u bad=%u last_cookie=%" PRIu64 " last_src=%" PRIu64, n, bad, last_cookie, last_src);
}

static void cmd_free(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  int e = do_free(strtoull(av[1], NULL, 0));
  if (e) return answer("err %s free", ename(e));
  answer("ok");
}

static void cmd_poll(char **av, int ac) {
  struct pollfd p = { conn_fd, POLLIN, 0 };
  int r = poll(&p, 1, ac > 1 ? atoi(av[1]) : 1000);
  if (r < 0) return answer("err %s poll", ename(errno));
  if (r == 0) return answer("ok timeout revents=0x0");
  answer("ok ready revents=0x%x", (unsigned)p.revents);
}

static void cmd_spam(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  uint64_t dst = parse_dst(av[1]);
  char vec[64], cookie[64];
  snprintf(vec, sizeof(vec), "vec:%s", av[2]);
  for (uint64_t c = 1;; c++) {
    snprintf(cookie, sizeof(cookie), "cookie:%" PRIu64, c);
    char *opts[] = { cookie, vec };
    struct stream st;
    int e = send_msg(opts, 2, dst, &st, NULL);
    if (c == 1) answer("ok spamming first=%s", e ? ename(e) : "0");
    usleep(200);
  }
}

// ---- names, policy, endpoints ----

static int name_cmd(unsigned long req, const char *name, uint64_t flags, uint64_t *out_flags) {
  size_t nlen = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_name) + ALIGN8(ITEM_HDR + nlen);
  struct kdbus_cmd_name *c = calloc(1, size);
  c->size = size;
  c->flags = flags;
  item_put(c->items, KDBUS_ITEM_NAME, name, nlen);
  int e = ioctl(conn_fd, req, c) < 0 ? errno : 0;
  if (out_flags) *out_flags = c->flags;
  free(c);
  return e;
}

static void cmd_acquire(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  uint64_t flags = 0, out = 0;
  for (int i = 2; i < ac; i++) {
    if (!strcmp(av[i], "replace")) flags |= KDBUS_NAME_REPLACE_EXISTING;
    else if (!strcmp(av[i], "allow")) flags |= KDBUS_NAME_ALLOW_REPLACEMENT;
    else if (!strcmp(av[i], "queue")) flags |= KDBUS_NAME_QUEUE;
    else return answer("err EINVAL bad flag %s", av[i]);
  }
  int e = name_cmd(KDBUS_CMD_NAME_ACQUIRE, av[1], flags, &out);
  if (e) return answer("err %s acquire", ename(e));
  answer("ok flags=%" PRIu64, out);
}

static void cmd_release(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  int e = name_cmd(KDBUS_CMD_NAME_RELEASE, av[1], 0, NULL);
  if (e) return answer("err %s release", ename(e));
  answer("ok");
}

static void cmd_list(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  uint64_t flags = 0;
  char spec[128];
  snprintf(spec, sizeof(spec), "%s", av[1]);
  for (char *save = NULL, *t = strtok_r(spec, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (!strcmp(t, "unique")) flags |= KDBUS_NAME_LIST_UNIQUE;
    else if (!strcmp(t, "names")) flags |= KDBUS_NAME_LIST_NAMES;
    else if (!strcmp(t, "activators")) flags |= KDBUS_NAME_LIST_ACTIVATORS;
    else if (!strcmp(t, "queued")) flags |= KDBUS_NAME_LIST_QUEUED;
    else if (!strcmp(t, "none")) continue;
    else return answer("err EINVAL bad list flag %s", t);
  }
  struct ibuf b = { 0 };
  for (int i = 2; i < ac; i++) {
    if (policy_opt(&b, av[i]) != 1) {
      free(b.p);
      return answer("err EINVAL bad option %s", av[i]);
    }
  }
  struct kdbus_cmd_name_list *lc = calloc(1, sizeof(*lc) + b.len);
  lc->size = sizeof(*lc) + b.len;
  lc->flags = flags;
  if (b.len) memcpy(lc->items, b.p, b.len);
  free(b.p);
  int e = ioctl(conn_fd, KDBUS_CMD_NAME_LIST, lc) < 0 ? errno : 0;
  struct kdbus_cmd_name_list c = *lc;
  free(lc);
  if (e) return answer("err %s name_list", ename(e));
  if (c.offset >= pool_size) return answer("err ERANGE off=%" PRIu64, (uint64_t)c.offset);
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream(&out, &outlen);
  const struct kdbus_name_list *l = (const void *)(pool + c.offset);
  uint64_t lsize = l->size, n = 0;
  int bad = lsize > pool_size - c.offset || lsize < sizeof(*l);
  const uint8_t *end = (const uint8_t *)l + (bad ? sizeof(*l) : lsize);
  const struct kdbus_name_info *ni = l->names;
  while (!bad && (const uint8_t *)ni + sizeof(*ni) <= end) {
    if (ni->size < sizeof(*ni) || (const uint8_t *)ni + ni->size > end) { bad = 1; break; }
    const char *nm = NULL;
    size_t nmax = 0;
    uint64_t nflags = 0;
    int nitems = 0;
    const uint8_t *rend = (const uint8_t *)ni + ni->size;
    for (const struct kdbus_item *it = ni->items;
         (const uint8_t *)it + ITEM_HDR <= rend && it->size >= ITEM_HDR && (const uint8_t *)it + it->size <= rend;
         it = ITEM_NEXT(it)) {
      nitems++;
      if (it->type == KDBUS_ITEM_OWNED_NAME && it->size >= ITEM_HDR + sizeof(uint64_t)) {
        nm = it->name.name;
        nmax = it->size - ITEM_HDR - sizeof(uint64_t);
        nflags = it->name.flags;
      }
    }
    char esc[4 * 256];
    if (nm) fprintf(f, "%s%" PRIu64 ":%" PRIu64 ":%s:%" PRIu64, n ? "," : "", (uint64_t)ni->owner_id,
                    (uint64_t)ni->conn_flags, escaped(nm, nmax, esc, sizeof(esc)), nflags);
    else fprintf(f, "%s%" PRIu64 ":%" PRIu64 ":-:-", n ? "," : "", (uint64_t)ni->owner_id, (uint64_t)ni->conn_flags);
    if (nitems > 1) fprintf(f, ":items=%d", nitems);
    n++;
    ni = (const void *)((const uint8_t *)ni + ALIGN8(ni->size));
  }
  fclose(f);
  int fe = do_free(c.offset);
  answer("ok n=%" PRIu64 " size=%" PRIu64 " list_size=%" PRIu64 " bad=%d recs=%s free=%s", n, lsize,
         (uint64_t)c.list_size, bad, n ? out : "-", fe ? ename(fe) : "0");
  free(out);
}

static void cmd_info(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  int byname = strchr(av[1], '.') != NULL;
  size_t nlen = byname ? strlen(av[1]) + 1 : 0;
  size_t size = sizeof(struct kdbus_cmd_info) + (byname ? ALIGN8(ITEM_HDR + nlen) : 0);
  struct kdbus_cmd_info *c = calloc(1, size);
  c->size = size;
  for (int i = 2; i < ac; i++) {
    if (!strncmp(av[i], "off:", 4)) c->offset = strtoull(av[i] + 4, NULL, 0);
    else c->flags = strtoull(av[i], NULL, 0);
  }
  if (byname) item_put(c->items, KDBUS_ITEM_NAME, av[1], nlen);
  else c->id = strtoull(av[1], NULL, 0);
  if (ioctl(conn_fd, KDBUS_CMD_CONN_INFO, c) < 0) {
    int e = errno;
    free(c);
    return answer("err %s conn_info", ename(e));
  }
  uint64_t off = c->offset;
  free(c);
  if (off >= pool_size) return answer("err ERANGE off=%" PRIu64, off);
  const struct kdbus_info *info = (const void *)(pool + off);
  uint64_t id = info->id, fl = info->flags, sz = info->size;
  int fe = do_free(off);
  answer("ok id=%" PRIu64 " flags=%" PRIu64 " size=%" PRIu64 " free=%s", id, fl, sz, fe ? ename(fe) : "0");
}

static void cmd_update(char **av, int ac) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct ibuf b = { 0 };
  for (int i = 1; i < ac; i++) {
    if (policy_opt(&b, av[i]) != 1) {
      free(b.p);
      return answer("err EINVAL bad option %s", av[i]);
    }
  }
  size_t size = sizeof(struct kdbus_cmd_update) + b.len;
  struct kdbus_cmd_update *c = calloc(1, size);
  c->size = size;
  if (b.len) memcpy(c->items, b.p, b.len);
  free(b.p);
  int e = ioctl(conn_fd, KDBUS_CMD_CONN_UPDATE, c) < 0 ? errno : 0;
  free(c);
  if (e) return answer("err %s conn_update", ename(e));
  answer("ok");
}

static void cmd_epmake(char **av, int ac) {
  if (ac < 4) return answer("err EINVAL usage");
  if (ep_fd >= 0) return answer("err EALREADY endpoint fd open");
  struct ibuf b = { 0 };
  ib_add(&b, KDBUS_ITEM_MAKE_NAME, av[2], strlen(av[2]) + 1);
  for (int i = 4; i < ac; i++) {
    if (policy_opt(&b, av[i]) != 1) {
      free(b.p);
      return answer("err EINVAL bad option %s", av[i]);
    }
  }
  uint64_t flags = !strcmp(av[3], "world") ? KDBUS_MAKE_ACCESS_WORLD : !strcmp(av[3], "group") ? KDBUS_MAKE_ACCESS_GROUP : 0;
  size_t size = sizeof(struct kdbus_cmd_make) + b.len;
  struct kdbus_cmd_make *c = calloc(1, size);
  c->size = size;
  c->flags = flags;
  memcpy(c->items, b.p, b.len);
  free(b.p);
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    free(c);
    return answer("err %s open", ename(errno));
  }
  int e = ioctl(fd, KDBUS_CMD_ENDPOINT_MAKE, c) < 0 ? errno : 0;
  free(c);
  if (e) {
    close(fd);
    return answer("err %s endpoint_make", ename(e));
  }
  ep_fd = fd;
  answer("ok name=%s", av[2]);
}

static void cmd_epclose(void) {
  if (ep_fd < 0) return answer("err EBADF no endpoint fd");
  close(ep_fd);
  ep_fd = -1;
  answer("ok");
}

// ---- synchronous calls and signals ----

static volatile sig_atomic_t sig_count;
static volatile int64_t sig_last_ns;

static void on_sigint(int s) {
  (void)s;
  sig_last_ns = now_ns();
  sig_count++;
}

static void cmd_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) < 0) return answer("err %s sigaction", ename(errno));
  answer("ok");
}

static void cmd_call(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct send_ctl ctl;
  memset(&ctl, 0, sizeof(ctl));
  ctl.sync = 1;
  ctl.cancel_ms = -1;
  ctl.default_expect_ms = 5000;
  struct stream st;
  int base = sig_count;
  int e = send_msg(av + 2, ac - 2, parse_dst(av[1]), &st, &ctl);
  int sigs = sig_count - base;
  char extra[160];
  snprintf(extra, sizeof(extra), " elapsed=%.1f sigs=%d sig_ms=%.1f",
           (double)(ctl.t1 - ctl.t0) / 1e6, sigs, sigs ? (double)(sig_last_ns - ctl.t0) / 1e6 : -1.0);
  if (e) return answer("err %s%s", ename(e), extra);
  uint64_t off = ctl.reply.offset;
  if (off >= pool_size) return answer("err ERANGE off=%" PRIu64 "%s", off, extra);
  int fe = do_free(off);   // the pool stays mapped: the bytes are still readable for parsing
  char extra2[200];
  snprintf(extra2, sizeof(extra2), "%s free=%s", extra, fe ? ename(fe) : "0");
  answer_msg("ok", off, ctl.reply.msg_size, extra2);
}

static void cmd_sendmany(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  uint64_t dst = parse_dst(av[1]);
  long n = atol(av[2]);
  char **opts = av + 3;
  int nopts = ac - 3, ci = -1;
  uint64_t c0 = 0;
  for (int i = 0; i < nopts; i++) {
    if (!strncmp(opts[i], "cookie:", 7)) {
      ci = i;
      c0 = strtoull(opts[i] + 7, NULL, 0);
    }
  }
  char cookie[40];
  char *copy[80];
  for (int i = 0; i < nopts && i < 80; i++) copy[i] = opts[i];
  for (long k = 0; k < n; k++) {
    if (ci >= 0) {
      snprintf(cookie, sizeof(cookie), "cookie:%" PRIu64, c0 + (uint64_t)k);
      copy[ci] = cookie;
    }
    struct stream st;
    int e = send_msg(copy, nopts, dst, &st, NULL);
    if (e) return answer("err %s sent=%ld", ename(e), k);
  }
  answer("ok sent=%ld", n);
}

// ---- namespaces and metadata ----

// "IN:OUT:COUNT[,IN:OUT:COUNT]" as uid_map/gid_map text; 0 or -1.
static int write_map(pid_t pid, const char *file, const char *spec) {
  char text[512], path[64];
  size_t n = 0;
  char copy[256];
  snprintf(copy, sizeof(copy), "%s", spec);
  for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    unsigned long in, out, count;
    if (sscanf(t, "%lu:%lu:%lu", &in, &out, &count) != 3) return -1;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "%lu %lu %lu\n", in, out, count);
    if (n >= sizeof(text)) return -1;
  }
  snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t w = write(fd, text, n);
  int e = errno;
  close(fd);
  errno = e;
  return w == (ssize_t)n ? 0 : -1;
}

static void cmd_container(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  if (conn_fd >= 0 || ctl_fd >= 0 || ep_fd >= 0) return answer("err EBUSY fds open");
  int sync[2], back[2];
  if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(back, O_CLOEXEC) < 0) return answer("err %s pipe", ename(errno));
  fflush(stdout);
  // fork()-like clone: the child runs on a copy of this stack.
  pid_t child = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | SIGCHLD),
                               NULL, NULL, NULL, NULL);
  if (child < 0) return answer("err %s clone", ename(errno));
  if (child == 0) {
    close(sync[1]);
    close(back[0]);
    int hostpid = 0;
    // EOF here: the parent failed (it answered) or died.
    if (read(sync[0], &hostpid, sizeof(hostpid)) != sizeof(hostpid)) _exit(111);
    close(sync[0]);
    int e = 0;
    if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
      e = errno;
    // After the uid change, which clears it; the parent is alive: it waits for our answer on back.
    else if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
      e = errno;
    if (write(back[1], &e, sizeof(e)) != sizeof(e)) _exit(112);
    close(back[1]);
    if (e) _exit(113);
    answer("ok pid=%d hostpid=%d ppid=%d uid=%u gid=%u", (int)getpid(), hostpid, (int)getppid(),
           (unsigned)getuid(), (unsigned)getgid());
    return;   // back to the command loop, as the container's peer
  }
  close(sync[0]);
  close(back[1]);
  int e = 0;
  const char *what = "";
  if (write_map(child, "uid_map", av[1]) < 0) { e = errno ? errno : EINVAL; what = "uid_map"; }
  else if (write_map(child, "gid_map", av[2]) < 0) { e = errno ? errno : EINVAL; what = "gid_map"; }
  if (e) {
    close(sync[1]);   // the child sees EOF and exits
    waitpid(child, NULL, 0);
    close(back[0]);
    return answer("err %s %s", ename(e), what);
  }
  int hostpid = (int)child;
  if (write(sync[1], &hostpid, sizeof(hostpid)) != sizeof(hostpid)) e = errno;
  close(sync[1]);
  int ce = 0;
  if (!e && read(back[0], &ce, sizeof(ce)) != sizeof(ce)) e = EIO;
  close(back[0]);
  if (e || ce) {
    waitpid(child, NULL, 0);
    return answer("err %s container setup", ename(e ? e : ce));
  }
  // From here on the child owns stdin and stdout.
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    close(null);
  }
  int st = 0;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void cmd_bind(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  unsigned long fl = MS_BIND | (ac > 3 && !strcmp(av[3], "rec") ? MS_REC : 0);
  if (mount(av[1], av[2], NULL, fl, NULL) < 0) return answer("err %s mount", ename(errno));
  answer("ok");
}

static void cmd_mknod(char **av, int ac) {
  if (ac < 5) return answer("err EINVAL usage");
  mode_t mode = (mode_t)strtoul(av[4], NULL, 8);
  if (mknod(av[1], S_IFCHR | mode, makedev(strtoul(av[2], NULL, 0), strtoul(av[3], NULL, 0))) < 0)
    return answer("err %s mknod", ename(errno));
  if (chmod(av[1], mode) < 0) return answer("err %s chmod", ename(errno));
  answer("ok");
}

static void cmd_open(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  close(fd);
  answer("ok");
}

static void cmd_whoami(void) {
  uid_t r, e, s;
  gid_t rg, eg, sg;
  getresuid(&r, &e, &s);
  getresgid(&rg, &eg, &sg);
  char self[64];
  ssize_t n = readlink("/proc/self", self, sizeof(self) - 1);
  self[n > 0 ? n : 0] = 0;
  answer("ok pid=%d tid=%d ppid=%d uid=%u,%u,%u gid=%u,%u,%u procself=%s", (int)getpid(), (int)gettid(),
         (int)getppid(), (unsigned)r, (unsigned)e, (unsigned)s, (unsigned)rg, (unsigned)eg, (unsigned)sg,
         n > 0 ? self : "-");
}

// The metadata items in [it, end) as " creds=... pids=... ..." into out.
static void meta_summary(const struct kdbus_item *it, const uint8_t *end, char *out, size_t cap) {
  char creds[160] = "-", pids[96] = "-", aux[256] = "-", caps[400] = "-", exe[300] = "-", comm[40] = "-",
       names[300] = "-", desc[100] = "-", types[300] = "";
  size_t tl = 0, nl = 0;
  for (; (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR && (const uint8_t *)it + it->size <= end;
       it = ITEM_NEXT(it)) {
    uint64_t dlen = it->size - ITEM_HDR;
    if (tl < sizeof(types))
      tl += (size_t)snprintf(types + tl, sizeof(types) - tl, "%s%" PRIx64, tl ? "," : "", (uint64_t)it->type);
    switch (it->type) {
    case KDBUS_ITEM_CREDS:
      if (dlen >= sizeof(struct kdbus_creds)) {
        const struct kdbus_creds *c = &it->creds;
        snprintf(creds, sizeof(creds), "%u,%u,%u,%u,%u,%u,%u,%u", c->uid, c->euid, c->suid, c->fsuid, c->gid,
                 c->egid, c->sgid, c->fsgid);
      }
      break;
    case KDBUS_ITEM_PIDS:
      if (dlen >= sizeof(struct kdbus_pids))
        snprintf(pids, sizeof(pids), "%" PRIu64 ",%" PRIu64 ",%" PRIu64, (uint64_t)it->pids.pid,
                 (uint64_t)it->pids.tid, (uint64_t)it->pids.ppid);
      break;
    case KDBUS_ITEM_AUXGROUPS: {
      size_t l = 0;
      aux[0] = 0;
      for (uint64_t i = 0; i < dlen / 4 && l < sizeof(aux); i++)
        l += (size_t)snprintf(aux + l, sizeof(aux) - l, "%s%u", i ? "," : "", (unsigned)it->data32[i]);
      if (!dlen) strcpy(aux, "none");
      break;
    }
    case KDBUS_ITEM_CAPS:
      if (dlen >= 4) {
        uint64_t words = (dlen - 4) / 4 / 4;   // u32 words per set
        size_t l = (size_t)snprintf(caps, sizeof(caps), "%u", (unsigned)it->caps.last_cap);
        for (uint64_t s = 0; s < 4 && l < sizeof(caps); s++) {
          l += (size_t)snprintf(caps + l, sizeof(caps) - l, ":");
          for (uint64_t w = 0; w < words && l < sizeof(caps); w++)
            l += (size_t)snprintf(caps + l, sizeof(caps) - l, "%s%x", w ? "." : "", (unsigned)it->caps.caps[s * words + w]);
        }
      }
      break;
    case KDBUS_ITEM_EXE:
      snprintf(exe, sizeof(exe), "%.*s", (int)strnlen(it->str, dlen), it->str);
      break;
    case KDBUS_ITEM_TID_COMM:
      snprintf(comm, sizeof(comm), "%.*s", (int)strnlen(it->str, dlen), it->str);
      break;
    case KDBUS_ITEM_CONN_DESCRIPTION:
      escaped(it->str, dlen, desc, sizeof(desc));
      break;
    case KDBUS_ITEM_OWNED_NAME:
      if (dlen > sizeof(uint64_t) && nl < sizeof(names)) {
        char esc[4 * 256];
        if (!nl) names[0] = 0;
        nl += (size_t)snprintf(names + nl, sizeof(names) - nl, "%s%s", nl ? "," : "",
                               escaped(it->name.name, dlen - sizeof(uint64_t), esc, sizeof(esc)));
      }
      break;
    default:
      break;
    }
  }
  snprintf(out, cap, " creds=%s pids=%s auxgroups=%s caps=%s exe=%s comm=%s names=%s desc=%s metatypes=%s", creds,
           pids, aux, caps, exe, comm, names, desc, tl ? types : "-");
}

static void cmd_recvmeta(char **av, int ac) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  for (int i = 1; i < ac; i++)
    if (!strncmp(av[i], "wait:", 5)) wait_in(atoi(av[i] + 5));
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) return answer("err %s recv", ename(errno));
  uint64_t off = r.msg.offset;
  if (off >= pool_size) return answer("err ERANGE off=%" PRIu64, off);
  const struct kdbus_msg *m = (const void *)(pool + off);
  char meta[2048];
  if (m->size < sizeof(*m) || m->size > pool_size - off) {
    do_free(off);
    return answer("err ERANGE msize=%" PRIu64, (uint64_t)m->size);
  }
  meta_summary(m->items, (const uint8_t *)m + m->size, meta, sizeof(meta));
  uint64_t src = m->src_id, cookie = m->cookie;
  int fe = do_free(off);
  answer("ok src=%" PRIu64 " cookie=%" PRIu64 " free=%s%s", src, cookie, fe ? ename(fe) : "0", meta);
}

static void cmd_creator(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct kdbus_cmd_info c = { .size = sizeof(c) };
  if (ioctl(conn_fd, KDBUS_CMD_BUS_CREATOR_INFO, &c) < 0) return answer("err %s bus_creator_info", ename(errno));
  if (c.offset >= pool_size) return answer("err ERANGE off=%" PRIu64, (uint64_t)c.offset);
  const struct kdbus_info *info = (const void *)(pool + c.offset);
  char name[4 * 64 + 8] = "-"; // a sysname: at most 63 bytes (limits.h), each at most "\xNN"
  const uint8_t *end = (const uint8_t *)info + info->size;
  for (const struct kdbus_item *it = info->items; (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR;
       it = ITEM_NEXT(it))
    if (it->type == KDBUS_ITEM_MAKE_NAME) escaped(it->str, it->size - ITEM_HDR, name, sizeof(name));
  uint64_t id = info->id;
  int fe = do_free(c.offset);
  answer("ok id=%" PRIu64 " name=%s free=%s", id, name, fe ? ename(fe) : "0");
}

static void cmd_infometa(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  int byname = strchr(av[1], '.') != NULL;
  size_t nlen = byname ? strlen(av[1]) + 1 : 0;
  size_t size = sizeof(struct kdbus_cmd_info) + (byname ? ALIGN8(ITEM_HDR + nlen) : 0);
  struct kdbus_cmd_info *c = calloc(1, size);
  c->size = size;
  c->flags = strtoull(av[2], NULL, 0);
  if (byname) item_put(c->items, KDBUS_ITEM_NAME, av[1], nlen);
  else c->id = strtoull(av[1], NULL, 0);
  if (ioctl(conn_fd, KDBUS_CMD_CONN_INFO, c) < 0) {
    int e = errno;
    free(c);
    return answer("err %s conn_info", ename(e));
  }
  uint64_t off = c->offset;
  free(c);
  if (off >= pool_size) return answer("err ERANGE off=%" PRIu64, off);
  const struct kdbus_info *info = (const void *)(pool + off);
  char meta[2048];
  if (info->size < sizeof(*info) || info->size > pool_size - off) {
    do_free(off);
    return answer("err ERANGE size=%" PRIu64, (uint64_t)info->size);
  }
  meta_summary(info->items, (const uint8_t *)info + info->size, meta, sizeof(meta));
  uint64_t id = info->id, fl = info->flags;
  int fe = do_free(off);
  answer("ok id=%" PRIu64 " flags=%" PRIu64 " free=%s%s", id, fl, fe ? ename(fe) : "0", meta);
}

// ---- refusals: writable pools, second handles ----

static void cmd_mapw(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  void *w = mmap(NULL, pool_size, PROT_READ | PROT_WRITE, MAP_SHARED, conn_fd, 0);
  int em = w == MAP_FAILED ? errno : 0;
  if (!em) munmap(w, pool_size);
  void *r = mmap(NULL, pool_size, PROT_READ, MAP_SHARED, conn_fd, 0);
  int ep = r == MAP_FAILED ? errno : 0;
  if (!ep) {
    if (mprotect(r, pool_size, PROT_READ | PROT_WRITE) < 0) ep = errno;
    munmap(r, pool_size);
  }
  answer("ok mmap=%s mprotect=%s", em ? ename(em) : "OK", ep ? ename(ep) : "OK");
}

// The payload ranges (PAYLOAD_OFF items) of the message at the head of the
// queue, looked at with RECV PEEK (the slice is freed again): their number,
// or -errno.
static int head_payload_ranges(uint64_t ranges[][2]) {
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  r.flags = KDBUS_RECV_PEEK;
  if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) return -errno;
  uint64_t off = r.msg.offset;
  if (off >= pool_size) return -ERANGE;
  int n = 0;
  const struct kdbus_msg *m = (const void *)(pool + off);
  const uint8_t *end = (const uint8_t *)m + (m->size <= pool_size - off ? m->size : 0);
  for (const struct kdbus_item *it = m->items;
       (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR && (const uint8_t *)it + it->size <= end && n < MAX_PARTS;
       it = ITEM_NEXT(it)) {
    if (it->type != KDBUS_ITEM_PAYLOAD_OFF || it->vec.offset == ~0ULL) continue;
    if (it->vec.offset > pool_size || it->vec.size > pool_size - it->vec.offset) continue;
    ranges[n][0] = it->vec.offset;
    ranges[n][1] = it->vec.size;
    n++;
  }
  do_free(off);
  return n;
}

static void cmd_scribble(char **av, int ac) {
  if (ac < 2 || (strcmp(av[1], "mmap") && strcmp(av[1], "write"))) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  uint64_t ranges[MAX_PARTS][2] = { { 0, pool_size } };
  int n = 1;
  if (ac < 3 || strcmp(av[2], "all")) n = head_payload_ranges(ranges);
  if (n < 0) return answer("err %s recv", ename(-n));
  uint8_t *w = NULL;
  if (!strcmp(av[1], "mmap")) {
    w = mmap(NULL, pool_size, PROT_READ | PROT_WRITE, MAP_SHARED, conn_fd, 0);
    if (w == MAP_FAILED) return answer("err %s mmap", ename(errno));
  }
  uint64_t bytes = 0;
  int e = 0;
  for (int i = 0; i < n && !e; i++) {
    if (w) {
      memset(w + ranges[i][0], 0x5a, ranges[i][1]);
      bytes += ranges[i][1];
      continue;
    }
    uint8_t *junk = malloc(ranges[i][1] ? ranges[i][1] : 1);
    memset(junk, 0x5a, ranges[i][1]);
    ssize_t wr = pwrite(conn_fd, junk, ranges[i][1], (off_t)ranges[i][0]);
    free(junk);
    if (wr < 0) e = errno;
    else bytes += (uint64_t)wr;
  }
  if (w) munmap(w, pool_size);
  if (e) return answer("err %s pwrite bytes=%" PRIu64, ename(e), bytes);
  answer("ok bytes=%" PRIu64 " ranges=%d", bytes, n);
}

static void cmd_reopen(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  const uint64_t psize = 1ULL << 20;
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  // kdbus refuses to map a handle that is not connected (EPERM)
  void *early = mmap(NULL, psize, PROT_READ, MAP_SHARED, fd, 0);
  int pe = early == MAP_FAILED ? errno : 0;
  if (!pe) munmap(early, psize);
  struct kdbus_cmd_hello h;
  fill_hello(&h, psize);
  if (ioctl(fd, KDBUS_CMD_HELLO, &h) < 0) {
    int e = errno;
    close(fd);
    return answer("err %s hello premap=%s", ename(e), pe ? ename(pe) : "OK");
  }
  const uint8_t *p = mmap(NULL, psize, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return answer("err %s mmap premap=%s", ename(e), pe ? ename(pe) : "OK");
  }
  uint64_t nonzero = 0;
  for (uint64_t i = 0; i < psize; i++)
    if (p[i] && (i < h.offset || i >= h.offset + h.items_size)) nonzero++;
  munmap((void *)p, psize);
  close(fd);
  answer("ok premap=%s id=%" PRIu64 " nonzero=%" PRIu64, pe ? ename(pe) : "OK", (uint64_t)h.id, nonzero);
}

static void cmd_bye(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  munmap(pool, pool_size);
  close(conn_fd);
  conn_fd = -1;
  pool = NULL;
  answer("ok");
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  setvbuf(stdout, NULL, _IOLBF, 0);
  answer("ok ready pid=%d", (int)getpid());
  while ((len = getline(&line, &cap, stdin)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char *av[80];
    int ac = 0;
    for (char *tok = strtok(line, " "); tok && ac < 80; tok = strtok(NULL, " ")) unescape(av[ac++] = tok);
    if (ac == 0) continue;
    const char *c = av[0];
    if (!strcmp(c, "setuid")) cmd_setuid(av, ac);
    else if (!strcmp(c, "creds")) cmd_creds(av, ac);
    else if (!strcmp(c, "make")) cmd_make(av, ac);
    else if (!strcmp(c, "unmake")) cmd_unmake();
    else if (!strcmp(c, "hello")) cmd_hello(av, ac);
    else if (!strcmp(c, "hello-unaligned")) cmd_hello_unaligned(av, ac);
    else if (!strcmp(c, "match")) cmd_match(av, ac);
    else if (!strcmp(c, "send")) cmd_send(av, ac);
    else if (!strcmp(c, "recv")) cmd_recv(av, ac);
    else if (!strcmp(c, "drain")) cmd_drain();
    else if (!strcmp(c, "free")) cmd_free(av, ac);
    else if (!strcmp(c, "poll")) cmd_poll(av, ac);
    else if (!strcmp(c, "spam")) cmd_spam(av, ac);
    else if (!strcmp(c, "bye")) cmd_bye();
    else if (!strcmp(c, "connect")) cmd_connect(av, ac);
    else if (!strcmp(c, "acquire")) cmd_acquire(av, ac);
    else if (!strcmp(c, "release")) cmd_release(av, ac);
    else if (!strcmp(c, "list")) cmd_list(av, ac);
    else if (!strcmp(c, "info")) cmd_info(av, ac);
    else if (!strcmp(c, "update")) cmd_update(av, ac);
    else if (!strcmp(c, "epmake")) cmd_epmake(av, ac);
    else if (!strcmp(c, "epclose")) cmd_epclose();
    else if (!strcmp(c, "sigint")) cmd_sigint();
    else if (!strcmp(c, "call")) cmd_call(av, ac);
    else if (!strcmp(c, "sendmany")) cmd_sendmany(av, ac);
    else if (!strcmp(c, "container")) cmd_container(av, ac);
    else if (!strcmp(c, "bind")) cmd_bind(av, ac);
    else if (!strcmp(c, "mknod")) cmd_mknod(av, ac);
    else if (!strcmp(c, "open")) cmd_open(av, ac);
    else if (!strcmp(c, "whoami")) cmd_whoami();
    else if (!strcmp(c, "recvmeta")) cmd_recvmeta(av, ac);
    else if (!strcmp(c, "infometa")) cmd_infometa(av, ac);
    else if (!strcmp(c, "creator")) cmd_creator();
    else if (!strcmp(c, "mapw")) cmd_mapw();
    else if (!strcmp(c, "scribble")) cmd_scribble(av, ac);
    else if (!strcmp(c, "reopen")) cmd_reopen(av, ac);
    else if (!strcmp(c, "exit")) break;
    else answer("err EINVAL unknown command %s", c);
  }
  free(line);
  return 0;
}
