// fuzz-client: a seeded, bounded fuzzer for kdbusfs (test/fuzz.test.ts,
// bench/fuzz-long.sh). Written against the kdbus ABI only (include/kdbus-abi.h).
//
//   fuzz-client fuzz DIR SEED NPROCS ITERS SECONDS
//     As root: BUS_MAKE 0-fuzz-SEED (MAKE_ACCESS_WORLD) on DIR/control, then
//     NPROCS worker processes (some under uid 65534 or 65533) each issue up to
//     ITERS requests (all 16 KDBUS_CMD_* with random and mutated sizes, flags,
//     items and pointers; valid messages with vectors, memfds and fds; opens,
//     closes, HELLO, BYEBYE, SIGKILL of siblings). Killed workers are replaced
//     until ITERS requests in all were made or SECONDS passed. Every ioctl runs
//     under alarm(WATCHDOG): a request that does not return kills the worker
//     with SIGALRM, counted as a hang.
//     Prints one line: "requests=N badptr=N kills=N procs=N sent=N recv=N
//     notif=N fuzzrecv=N hangs=N violations=N ok=N errs=N" and exits 0 when
//     hangs and violations are 0, 1 otherwise (each is described on stderr).
//   fuzz-client check DIR NAME
//     BUS_MAKE 0-NAME, two connections, a 3-vector message plus a memfd from
//     one to the other, received and compared byte for byte. "check ok".
//
// Invariant 2 (no foreign data): every payload a worker sends is either
// "marked" (a header with magic, the sender's pid, connection id, the
// destination and a seed, then pattern bytes derived from the seed) or, for
// fuzzed messages, bytes of the sender's tag arena (one byte value per sender
// pid, 0x80..0xff). A worker that receives a message from a connection (src
// != 0) checks that the payload is exactly one marked stream sent by src_id
// to it (or broadcast), optionally followed by tag bytes, or only tag bytes;
// and that every offset it gets back (RECV, CONN_INFO, BUS_CREATOR_INFO,
// NAME_LIST) lies inside its own pool.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"

#define MAGIC 0x5a5a7a7a66757a7aULL
#define WATCHDOG 10 /* seconds: no single request may take longer */
#define POOL (1 << 20)
#define MAXP 64
#define BLOOM 8

// ---- shared state (MAP_SHARED anonymous, written by all processes) ----

struct shared {
  uint64_t requests, badptr, kills, procs, sent, recv, notif, fuzzrecv;
  uint64_t hangs, violations, ok, errs, zombies;
  uint64_t percmd[16];
  pid_t pids[MAXP];
  volatile uint64_t cur_cmd[MAXP]; /* the request in flight, for hang reports */
  volatile uint64_t cur_seed[MAXP];
  volatile uint64_t ids[MAXP]; /* the connection id of each worker, 0 when none */
};
static struct shared *S;
#define INC(f) __atomic_fetch_add(&S->f, 1, __ATOMIC_RELAXED)

static const unsigned long cmds[16] = {
    KDBUS_CMD_BUS_MAKE,  KDBUS_CMD_ENDPOINT_MAKE, KDBUS_CMD_HELLO,           KDBUS_CMD_BYEBYE,
    KDBUS_CMD_SEND,      KDBUS_CMD_RECV,          KDBUS_CMD_FREE,            KDBUS_CMD_NAME_ACQUIRE,
    KDBUS_CMD_NAME_RELEASE, KDBUS_CMD_NAME_LIST,  KDBUS_CMD_CONN_INFO,       KDBUS_CMD_CONN_UPDATE,
    KDBUS_CMD_BUS_CREATOR_INFO, KDBUS_CMD_ENDPOINT_UPDATE, KDBUS_CMD_MATCH_ADD, KDBUS_CMD_MATCH_REMOVE,
};
#define OP(c) (slot >= 0 ? (S->cur_cmd[slot] = (c)) : 0)
enum { OP_OPEN = 17, OP_CLOSE, OP_MMAP, OP_MUNMAP, OP_OTHER };
static const char *opnames[] = {"open", "close", "mmap", "munmap", "other"};
static const char *cmdnames[16] = {
    "BUS_MAKE", "ENDPOINT_MAKE", "HELLO", "BYEBYE", "SEND", "RECV", "FREE", "NAME_ACQUIRE",
    "NAME_RELEASE", "NAME_LIST", "CONN_INFO", "CONN_UPDATE", "BUS_CREATOR_INFO", "ENDPOINT_UPDATE",
    "MATCH_ADD", "MATCH_REMOVE",
};

// ---- PRNG (xorshift64*) ----

static uint64_t rs;
static uint64_t rnd(void) {
  rs ^= rs >> 12;
  rs ^= rs << 25;
  rs ^= rs >> 27;
  return rs * 2685821657736338717ULL;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static int chance(int pct) { return (int)below(100) < pct; }
static uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL);
  x ^= x >> 31; x *= 0xbf58476d1ce4e5b9ULL; x ^= x >> 29;
  return x ? x : 1;
}

static inline uint8_t pat(uint64_t seed, uint64_t k) {
  return (uint8_t)(k * 131 + (k >> 8) * 7 + seed * 17 + (seed >> 13) + 1);
}
static uint8_t tag_of(pid_t pid) { return (uint8_t)(0x80 | (pid * 37 % 128)); }

// ---- per-worker state ----

static int slot = -1, nworkers = 1;
static const char *dir;
static char busname[64];
static char buspath[256], ctlpath[256];
static int ctl_fd = -1, conn_fd = -1, extra_fds[4] = {-1, -1, -1, -1};
static uint8_t *pool;
static uint64_t my_id;
static uint8_t *arena;  /* tag bytes of this sender */
static uint8_t *guard;  /* a page followed by a PROT_NONE page */
static uint8_t *unmapped;
static uint8_t buf[65536] __attribute__((aligned(8)));

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "VIOLATION pid=%d slot=%d seed=%" PRIu64 ": ", getpid(), slot, slot >= 0 ? S->cur_seed[slot] : 0);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  INC(violations);
}

static int xioctl(int fd, int ci, void *arg) {
  if (slot >= 0) S->cur_cmd[slot] = (uint64_t)ci + 1;
  INC(requests);
  __atomic_fetch_add(&S->percmd[ci], 1, __ATOMIC_RELAXED);
  int r = ioctl(fd, cmds[ci], arg);
  int e = errno;
  if (slot >= 0) S->cur_cmd[slot] = 0;
  if (r == 0) INC(ok); else INC(errs);
  errno = e;
  return r;
}

static int in_pool(uint64_t off, uint64_t size) {
  return off < POOL && size <= POOL - off;
}

// ---- the connection ----

static void drop_conn(void) {
  OP(OP_MUNMAP);
  if (pool) munmap(pool, POOL);
  pool = NULL;
  OP(OP_CLOSE);
  if (conn_fd >= 0) close(conn_fd);
  OP(0);
  conn_fd = -1;
  my_id = 0;
  if (slot >= 0) S->ids[slot] = 0;
}

static int hello(void) {
  drop_conn();
  OP(OP_OPEN);
  int fd = open(buspath, O_RDWR | O_CLOEXEC);
  OP(0);
  if (fd < 0) return -1;
  struct kdbus_cmd_hello *h = (void *)buf;
  memset(buf, 0, sizeof(struct kdbus_cmd_hello));
  h->size = sizeof(*h);
  h->flags = KDBUS_HELLO_ACCEPT_FD;
  h->attach_flags_send = _KDBUS_ATTACH_ALL;
  h->attach_flags_recv = chance(50) ? KDBUS_ATTACH_PIDS : 0;
  h->pool_size = POOL;
  if (xioctl(fd, 2, h) < 0) { close(fd); return -1; }
  OP(OP_MMAP);
  void *p = mmap(NULL, POOL, PROT_READ, MAP_SHARED, fd, 0);
  OP(0);
  if (p == MAP_FAILED) { close(fd); return -1; }
  if (!in_pool(h->offset, h->items_size)) violation("HELLO offset %" PRIu64 " size %" PRIu64 " outside the pool", h->offset, h->items_size);
  conn_fd = fd;
  pool = p;
  my_id = h->id;
  if (slot >= 0) S->ids[slot] = my_id;
  struct kdbus_cmd_free f = {.size = sizeof(f), .offset = h->offset};
  xioctl(fd, 6, &f);
  return 0;
}

static void free_off(uint64_t off) {
  struct kdbus_cmd_free f = {.size = sizeof(f), .offset = off};
  xioctl(conn_fd, 6, &f);
}

// ---- marked payloads ----

struct marker {
  uint64_t magic, pid, src, dst, seed, len; /* len: pattern bytes after the header */
  uint64_t mut; /* the envelope mutation the sender applied, 0: none, 1 + case */
};

static void fill_marked(uint8_t *p, uint64_t dst, uint64_t seed, uint64_t len, uint64_t mut) {
  struct marker m = {MAGIC, (uint64_t)getpid(), my_id, dst, seed, len, mut};
  memcpy(p, &m, sizeof(m));
  for (uint64_t k = 0; k < len; k++) p[sizeof(m) + k] = pat(seed, k);
}

static int make_memfd(const uint8_t *data, uint64_t len, int seal) {
  int fd = (int)syscall(SYS_memfd_create, "fuzz", 3 /* CLOEXEC|ALLOW_SEALING */);
  if (fd < 0) return -1;
  if (write(fd, data, len) != (ssize_t)len) { close(fd); return -1; }
  if (seal) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return fd;
}

static struct kdbus_item *add_item(uint8_t **w, uint64_t type, uint64_t payload) {
  struct kdbus_item *it = (void *)*w;
  memset(it, 0, ALIGN8(ITEM_HDR + payload));
  it->size = ITEM_HDR + payload;
  it->type = type;
  *w += ALIGN8(it->size);
  return it;
}

// A random pointer for a fuzzed request: NULL, unmapped, misaligned, into the
// read-only pool, or straddling the end of a mapping.
static void *bad_pointer(uint64_t want) {
  INC(badptr);
  switch (below(7)) {
  case 0: return NULL;
  case 1: return unmapped + below(4096);
  case 2: return (uint8_t *)buf + 1 + below(7);
  case 3: return pool ? pool + below(POOL) : (void *)(uintptr_t)0x10;
  case 4: return guard + 4096 - (want > 8 ? below(want) : 4);
  case 5: return (void *)(uintptr_t)(rnd() | 0xffff800000000000ULL);
  default: return pool ? pool + POOL - 8 : NULL;
  }
}

// The same for payload vectors: never readable memory other than tag bytes
// (the sender's pool is readable, but holds other senders' data).
static void *bad_vec_pointer(uint64_t want) {
  INC(badptr);
  switch (below(5)) {
  case 0: return NULL;
  case 1: return unmapped + below(4096);
  case 2: return arena + 1 + 2 * below(7);
  case 3: return guard + 4096 - (want > 8 ? below(want) : 4);
  default: return (void *)(uintptr_t)(rnd() | 0xffff800000000000ULL);
  }
}

static int any_fd(void) {
  int c[4] = {conn_fd, ctl_fd, extra_fds[below(4)], (int)below(20)};
  return c[below(4)];
}

// ---- receiving and checking ----

static const char *describe(const struct kdbus_msg *msg) {
  static char d[2048];
  int o = snprintf(d, sizeof(d), "size=%llu flags=%llx", (unsigned long long)msg->size, (unsigned long long)msg->flags);
  const uint8_t *end = (const uint8_t *)msg + msg->size;
  for (const struct kdbus_item *it = msg->items; (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR && o < 1900;
       it = (const void *)((const uint8_t *)it + ALIGN8(it->size))) {
    o += snprintf(d + o, sizeof(d) - o, " [type=%llx size=%llu", (unsigned long long)it->type, (unsigned long long)it->size);
    if (it->type == KDBUS_ITEM_PAYLOAD_OFF || it->type == KDBUS_ITEM_PAYLOAD_MEMFD)
      o += snprintf(d + o, sizeof(d) - o, " %llu:%llu", (unsigned long long)it->data64[0], (unsigned long long)it->data64[1]);
    o += snprintf(d + o, sizeof(d) - o, "]");
  }
  return d;
}

static void check_payload(const struct kdbus_msg *msg, const uint8_t *data, uint64_t n, const char *where) {
  uint64_t i = 0, mut = 0;
  if (n > 0 && n < sizeof(struct marker)) {
    /* a sender that cut its item list (mutation 1) can leave less than the
     * marker: its prefix, whose fields present must still be right */
    uint64_t magic = MAGIC, src = msg->src_id;
    if (!memcmp(data, &magic, n < 8 ? n : 8)) {
      if (n >= 24 && memcmp(data + 16, &src, 8)) { violation("%s: a cut marker of conn other than %" PRIu64, where, src); return; }
      if (n >= 32) {
        uint64_t dst;
        memcpy(&dst, data + 24, 8);
        if (dst != my_id && dst != KDBUS_DST_ID_BROADCAST) { violation("%s: a cut marker for %" PRIu64 " received by %" PRIu64, where, dst, my_id); return; }
      }
      return;
    }
  }
  if (n >= sizeof(struct marker)) {
    struct marker m;
    memcpy(&m, data, sizeof(m));
    if (m.magic == MAGIC) {
      if (m.src != msg->src_id) { violation("%s: marker of conn %" PRIu64 " (pid %" PRIu64 ") in a message from %" PRIu64, where, m.src, m.pid, msg->src_id); return; }
      if (m.dst != my_id && m.dst != KDBUS_DST_ID_BROADCAST) { violation("%s: message for %" PRIu64 " received by %" PRIu64, where, m.dst, my_id); return; }
      if (m.dst != msg->dst_id) { violation("%s: dst_id %" PRIu64 " but marker says %" PRIu64, where, msg->dst_id, m.dst); return; }
      if (n < sizeof(m) + m.len) {
        /* the sender cut its item list (a fuzzed msg->size): a prefix */
        if (m.mut != 1) { violation("%s: payload %" PRIu64 " shorter than the marked %" PRIu64 " (sender mutation %" PRIu64 ")", where, n, m.len, m.mut); return; }
        m.len = n - sizeof(m);
      }
      for (uint64_t k = 0; k < m.len; k++)
        if (data[sizeof(m) + k] != pat(m.seed, k)) { violation("%s: byte %" PRIu64 " of a marked stream differs", where, k); return; }
      i = sizeof(m) + m.len;
      mut = m.mut;
    }
  }
  if (i < n) {
    uint8_t t = data[i];
    if (!(t & 0x80)) { violation("%s: unattributable payload byte 0x%02x at %" PRIu64 "/%" PRIu64 " from %" PRIu64 " (sender mutation %" PRIu64 ") items: %s", where, t, i, n, msg->src_id, mut, describe(msg)); return; }
    for (uint64_t k = i; k < n; k++)
      if (data[k] != t) { violation("%s: mixed payload bytes at %" PRIu64 "/%" PRIu64 " from %" PRIu64 " (sender mutation %" PRIu64 ") items: %s", where, k, n, msg->src_id, mut, describe(msg)); return; }
    if (i == 0) INC(fuzzrecv);
  }
}

static int peeking;
static void check_msg(uint64_t off, uint64_t size) {
  if (!in_pool(off, size) || size < sizeof(struct kdbus_msg)) {
    violation("RECV offset %" PRIu64 " size %" PRIu64 " outside the pool", off, size);
    return;
  }
  const struct kdbus_msg *msg = (const void *)(pool + off);
  if (msg->size != size && size) { /* msg_size is the message size */ }
  if (msg->size > size || msg->size < sizeof(*msg)) { violation("RECV msg->size %" PRIu64 " vs %" PRIu64, msg->size, size); return; }
  if (msg->src_id == 0) { INC(notif); return; }
  INC(recv);
  static uint8_t data[1 << 18];
  uint64_t n = 0;
  const uint8_t *end = (const uint8_t *)msg + msg->size;
  for (const struct kdbus_item *it = msg->items; (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR;
       it = (const void *)((const uint8_t *)it + ALIGN8(it->size))) {
    if ((const uint8_t *)it + it->size > end) { violation("RECV item past the message end"); break; }
    if (it->type == KDBUS_ITEM_PAYLOAD_OFF) {
      if (it->vec.offset == ~0ULL) continue;
      if (!in_pool(it->vec.offset, it->vec.size)) /* relative to the pool (ipc/kdbus/queue.c) */ { violation("PAYLOAD_OFF %" PRIu64 "+%" PRIu64 " outside the pool", it->vec.offset, it->vec.size); return; }
      uint64_t c = it->vec.size;
      if (n + c > sizeof(data)) c = sizeof(data) - n;
      memcpy(data + n, pool + it->vec.offset, c);
      n += c;
    } else if (it->type == KDBUS_ITEM_PAYLOAD_MEMFD) {
      int fd = it->memfd.fd;
      uint64_t c = it->memfd.size;
      if (fd < 0) { if (!peeking) violation("PAYLOAD_MEMFD without an fd"); n = sizeof(data) + 1; break; }
      if (n + c > sizeof(data)) c = sizeof(data) - n;
      ssize_t r = pread(fd, data + n, c, (off_t)it->memfd.start);
      if (r != (ssize_t)c) violation("memfd fd %d: read %zd of %" PRIu64, fd, r, c);
      else n += c;
      close(fd);
    } else if (it->type == KDBUS_ITEM_FDS) {
      for (uint64_t k = 0; k < (it->size - ITEM_HDR) / sizeof(int); k++)
        if (it->fds[k] > 2) close(it->fds[k]);
    } else if (it->type == KDBUS_ITEM_PIDS) {
      /* the sender pid, checked against a marker below */
    }
  }
  if (n <= sizeof(data)) check_payload(msg, data, n, "RECV");
}

static void do_recv(int fuzz) {
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  if (fuzz) {
    r.flags = chance(50) ? below(8) : rnd();
    r.priority = (int64_t)rnd();
    if (chance(20)) r.size = below(sizeof(r) * 2);
  }
  int rr = xioctl(conn_fd, 5, &r);
  if (rr == 0 && !(r.flags & KDBUS_RECV_DROP)) {
    peeking = !!(r.flags & KDBUS_RECV_PEEK);
    check_msg(r.msg.offset, r.msg.msg_size);
    peeking = 0;
    free_off(r.msg.offset);
  } else if (rr == 0 && r.msg.offset) {
    violation("RECV with DROP returned offset %" PRIu64, r.msg.offset);
  }
}

// ---- sending ----

static uint64_t pick_dst(void) {
  if (chance(10)) return KDBUS_DST_ID_BROADCAST;
  if (chance(5)) return rnd();
  if (chance(10)) return 1 + below(12);
  if (chance(10)) return my_id;
  uint64_t id = S->ids[below(MAXP) % (uint64_t)nworkers];
  return id ? id : my_id;
}

static void send_marked(int fuzz) {
  static uint8_t pay[3][4200];
  uint64_t dst = pick_dst();
  uint64_t seed = rnd();
  uint64_t len = below(4000);
  uint8_t *mb = calloc(1, 4096);
  uint64_t mut = fuzz ? 1 + below(8) : 0;
  uint8_t *w = mb;
  struct kdbus_msg *m = (void *)w;
  memset(m, 0, sizeof(*m));
  m->dst_id = dst;
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->cookie = rnd() | 1;
  if (dst == KDBUS_DST_ID_BROADCAST) m->flags = KDBUS_MSG_SIGNAL;
  else if (chance(20)) { m->flags = KDBUS_MSG_EXPECT_REPLY; m->timeout_ns = 1000000000ULL * (1 + below(3)) + (uint64_t)time(NULL) * 0; }
  if (m->flags & KDBUS_MSG_EXPECT_REPLY) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    m->timeout_ns = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec + 200000000ULL;
  }
  w += sizeof(*m);
  // the marked stream: header + pattern, over up to 3 vectors or a memfd
  fill_marked(pay[0], dst, seed, len, mut);
  uint64_t total = sizeof(struct marker) + len;
  int memfd = -1;
  if (chance(15)) memfd = make_memfd(pay[0], total, 1);
  if (memfd >= 0) {
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_MEMFD, sizeof(struct kdbus_memfd));
    it->memfd.size = total;
    it->memfd.fd = memfd;
  } else {
    uint64_t a = total / 3 + below(total / 3 + 1), b = a + below(total - a + 1);
    uint64_t cut[4] = {0, a, b, total};
    for (int k = 0; k < 3; k++) {
      if (cut[k + 1] == cut[k]) continue;
      struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
      it->vec.address = (uintptr_t)(pay[0] + cut[k]);
      it->vec.size = cut[k + 1] - cut[k];
      if (chance(10)) { struct kdbus_item *z = add_item(&w, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec)); z->vec.size = below(64); }
    }
  }
  if (chance(20)) { // tag bytes after the stream
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
    it->vec.address = (uintptr_t)(arena + below(1024));
    it->vec.size = 1 + below(2048);
  }
  int fds[2] = {-1, -1};
  if (chance(10)) {
    fds[0] = eventfd(0, EFD_CLOEXEC);
    fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_FDS, sizeof(fds));
    memcpy(it->fds, fds, sizeof(fds));
  }
  if (dst == KDBUS_DST_ID_BROADCAST || chance(5)) {
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_BLOOM_FILTER, sizeof(struct kdbus_bloom_filter) + BLOOM);
    memset(it->bloom_filter.data, chance(50) ? 0xff : 0, BLOOM);
  }
  if (chance(5)) {
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_DST_NAME, 16);
    snprintf(it->str, 16, "fz.n%d", (int)below(4));
    m->dst_id = KDBUS_DST_ID_NAME;
  }
  m->size = (uint64_t)(w - mb);
  struct kdbus_cmd_send cmd;
  memset(&cmd, 0, sizeof(cmd));
  cmd.size = sizeof(cmd);
  cmd.msg_address = (uintptr_t)m;
  if (fuzz) {
    // mutate the envelope, never the payload bytes
    switch (mut - 1) {
    case 0: m->size = below(m->size * 2 + 1); break;
    case 1: { struct kdbus_item *it = m->items; if ((uint8_t *)it < w) it->size = below(64); break; }
    case 2: { struct kdbus_item *it = m->items; if ((uint8_t *)it < w) it->type = below(0x1010); break; }
    case 3: cmd.size = below(sizeof(cmd) * 3); break;
    case 4: cmd.flags = rnd() & ~(uint64_t)KDBUS_SEND_SYNC_REPLY; break;
    case 5: m->flags = rnd() & ~(uint64_t)KDBUS_MSG_EXPECT_REPLY; break;
    case 6: cmd.msg_address = (uintptr_t)bad_pointer(m->size); break;
    default: m->priority = (int64_t)rnd(); m->payload_type = chance(50) ? 0 : rnd(); break;
    }
  } else if (chance(10) && (m->flags & KDBUS_MSG_EXPECT_REPLY)) {
    cmd.flags = KDBUS_SEND_SYNC_REPLY;
  }
  if (m->dst_id == KDBUS_DST_ID_NAME && !chance(50)) m->dst_id = dst;
  if (xioctl(conn_fd, 4, &cmd) == 0) {
    INC(sent);
    if (cmd.flags & KDBUS_SEND_SYNC_REPLY && cmd.reply.offset) {
      check_msg(cmd.reply.offset, cmd.reply.msg_size);
      free_off(cmd.reply.offset);
    }
  }
  if (memfd >= 0) close(memfd);
  for (int k = 0; k < 2; k++) if (fds[k] >= 0) close(fds[k]);
  free(mb);
}

// ---- random requests ----

static const uint64_t item_types[] = {
    KDBUS_ITEM_PAYLOAD_VEC, KDBUS_ITEM_PAYLOAD_OFF, KDBUS_ITEM_PAYLOAD_MEMFD, KDBUS_ITEM_FDS,
    KDBUS_ITEM_CANCEL_FD, KDBUS_ITEM_BLOOM_PARAMETER, KDBUS_ITEM_BLOOM_FILTER, KDBUS_ITEM_BLOOM_MASK,
    KDBUS_ITEM_DST_NAME, KDBUS_ITEM_MAKE_NAME, KDBUS_ITEM_ATTACH_FLAGS_SEND, KDBUS_ITEM_ATTACH_FLAGS_RECV,
    KDBUS_ITEM_ID, KDBUS_ITEM_NAME, KDBUS_ITEM_CREDS, KDBUS_ITEM_PIDS, KDBUS_ITEM_POLICY_ACCESS,
    KDBUS_ITEM_NAME_ADD, KDBUS_ITEM_NAME_REMOVE, KDBUS_ITEM_NAME_CHANGE, KDBUS_ITEM_ID_ADD,
    KDBUS_ITEM_ID_REMOVE, KDBUS_ITEM_REPLY_TIMEOUT, KDBUS_ITEM_REPLY_DEAD, 0, 1, 0xffffffffffffffffULL,
};

// A valid-ish item of a random type, then maybe mutated.
static void rand_item(uint8_t **w, uint8_t *limit) {
  if (limit - *w < 128) return;
  uint64_t type = item_types[below(sizeof(item_types) / sizeof(item_types[0]))];
  struct kdbus_item *it;
  switch (type) {
  case KDBUS_ITEM_MAKE_NAME: case KDBUS_ITEM_NAME: case KDBUS_ITEM_DST_NAME: {
    static const char *names[] = {"0-fz", "65534-fz", "fz.a", "fz.n1", "fz.b.c", "", "a..b", "0-fuzz-x", "x"};
    const char *n = names[below(9)];
    it = add_item(w, type, strlen(n) + 1);
    memcpy(it->str, n, strlen(n) + 1);
    break;
  }
  case KDBUS_ITEM_BLOOM_PARAMETER:
    it = add_item(w, type, sizeof(struct kdbus_bloom_parameter));
    it->bloom_parameter.size = chance(50) ? BLOOM : below(300);
    it->bloom_parameter.n_hash = below(4);
    break;
  case KDBUS_ITEM_BLOOM_FILTER: case KDBUS_ITEM_BLOOM_MASK:
    it = add_item(w, type, 8 + (chance(50) ? BLOOM : below(40)));
    break;
  case KDBUS_ITEM_POLICY_ACCESS:
    it = add_item(w, type, sizeof(struct kdbus_policy_access));
    it->policy_access.type = below(4);
    it->policy_access.access = below(4);
    it->policy_access.id = chance(50) ? 65534 : rnd();
    break;
  case KDBUS_ITEM_PAYLOAD_VEC:
    it = add_item(w, type, sizeof(struct kdbus_vec));
    it->vec.size = below(3000);
    it->vec.address = chance(70) ? (uintptr_t)(arena + below(1024)) : (uintptr_t)bad_vec_pointer(it->vec.size);
    break;
  case KDBUS_ITEM_FDS: {
    int n = (int)below(4);
    it = add_item(w, type, n * sizeof(int));
    for (int k = 0; k < n; k++) it->fds[k] = chance(60) ? (int)below(8) : (int)rnd();
    break;
  }
  case KDBUS_ITEM_PAYLOAD_MEMFD:
    it = add_item(w, type, sizeof(struct kdbus_memfd));
    it->memfd.size = below(100);
    it->memfd.fd = (int)below(10);
    break;
  default:
    it = add_item(w, type, 8 * below(5));
    for (uint64_t k = 0; k < it->size - ITEM_HDR; k++) it->data[k] = chance(50) ? 0 : (uint8_t)rnd();
    break;
  }
  if (chance(15)) it->size = chance(50) ? below(it->size + 16) : rnd() % 100000;
  if (chance(5)) it->type = rnd() % 0x2000;
}

static void fuzz_request(void) {
  int ci = (int)below(16);
  if (chance(40)) ci = (int)(4 + below(6)); /* favour the connection commands */
  uint64_t want = 8 * (4 + below(12));
  memset(buf, 0, 1024);
  uint64_t *h = (uint64_t *)buf;
  uint8_t *w = buf + want;
  int nitems = (int)below(4);
  for (int k = 0; k < nitems; k++) rand_item(&w, buf + sizeof(buf));
  for (uint64_t k = 1; k < want / 8; k++) h[k] = chance(60) ? 0 : chance(50) ? below(16) : rnd();
  if (ci == 2) { h[8] = chance(70) ? POOL : rnd(); h[1] = below(8); } /* HELLO pool_size, flags */
  if (ci == 0 || ci == 1) h[1] = chance(60) ? KDBUS_MAKE_ACCESS_WORLD : rnd();
  if (ci == 6 && pool && chance(50)) h[1] = below(POOL); /* FREE offset */
  if (ci == 4) {
    uint8_t *mw = buf + 4096;
    struct kdbus_msg *m = (void *)mw;
    memset(m, 0, sizeof(*m));
    m->flags = chance(50) ? below(8) & ~(uint64_t)KDBUS_MSG_EXPECT_REPLY : rnd() & ~(uint64_t)KDBUS_MSG_EXPECT_REPLY;
    m->dst_id = pick_dst();
    m->src_id = chance(80) ? 0 : rnd();
    m->payload_type = chance(80) ? KDBUS_PAYLOAD_DBUS : rnd();
    m->cookie = rnd();
    m->priority = chance(50) ? 0 : (int64_t)rnd();
    mw += sizeof(*m);
    int nm = (int)below(5);
    if (chance(30)) { /* a plausible message: tag bytes only */
      nm = 0;
      m->flags &= KDBUS_MSG_NO_AUTO_START;
      struct kdbus_item *it = add_item(&mw, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
      it->vec.address = (uintptr_t)(arena + below(1024));
      it->vec.size = 1 + below(3000);
    }
    for (int k = 0; k < nm; k++) rand_item(&mw, buf + sizeof(buf));
    m->size = (uint64_t)(mw - (uint8_t *)m);
    if (chance(15)) m->size = chance(50) ? below(m->size + 32) : rnd();
    h[5] = chance(85) ? (uintptr_t)m : (uintptr_t)bad_pointer(64);
  }
  h[0] = (uint64_t)(w - buf);
  if (chance(20)) h[0] = chance(50) ? below(h[0] + 64) : rnd();
  if (ci == 4) h[1] &= ~(uint64_t)KDBUS_SEND_SYNC_REPLY;
  void *arg = buf;
  if (chance(12)) arg = bad_pointer(h[0]);
  else if (chance(8)) { arg = guard + 4096 - want; memcpy(arg, buf, want); INC(badptr); }
  int fd = chance(80) ? (ci < 2 ? (chance(70) ? ctl_fd : any_fd()) : (chance(85) ? conn_fd : any_fd())) : any_fd();
  if (fd < 0) fd = conn_fd;
  int r = xioctl(fd, ci, arg);
  if (r == 0 && arg == buf && fd == conn_fd && pool) {
    if (ci == 9) { /* NAME_LIST offset and list_size */
      struct kdbus_cmd_name_list *c = (void *)buf;
      if (!in_pool(c->offset, c->list_size)) violation("NAME_LIST offset %" PRIu64 " size %" PRIu64 " outside the pool", c->offset, c->list_size);
      else free_off(c->offset);
    } else if (ci == 10 || ci == 12) {
      struct kdbus_cmd_info *c = (void *)buf;
      if (!in_pool(c->offset, c->info_size)) violation("%s offset %" PRIu64 " size %" PRIu64 " outside the pool", cmdnames[ci], c->offset, c->info_size);
      else free_off(c->offset);
    } else if (ci == 5) {
      struct kdbus_cmd_recv *c = (void *)buf;
      if (!(c->flags & KDBUS_RECV_DROP)) { peeking = !!(c->flags & KDBUS_RECV_PEEK); check_msg(c->msg.offset, c->msg.msg_size); peeking = 0; free_off(c->msg.offset); }
    }
  }
  if (r == 0 && ci == 0 && fd == ctl_fd) { /* made a bus on the shared control fd: start a fresh one */
    close(ctl_fd);
    ctl_fd = open(ctlpath, O_RDWR | O_CLOEXEC);
  }
  if (r == 0 && ci == 2 && fd != conn_fd && fd > 2) { close(fd); } /* a HELLO on a stray fd */
}

static void info_valid(void) {
  struct kdbus_cmd_info c;
  memset(&c, 0, sizeof(c));
  c.size = sizeof(c);
  c.id = below(3) ? 1 + below(12) : my_id;
  c.flags = chance(50) ? _KDBUS_ATTACH_ALL : 0;
  int ci = chance(80) ? 10 : 12;
  if (xioctl(conn_fd, ci, &c) == 0) {
    if (!in_pool(c.offset, c.info_size)) violation("%s offset %" PRIu64 " outside the pool", cmdnames[ci], c.offset);
    else free_off(c.offset);
  }
  struct kdbus_cmd_name_list l;
  memset(&l, 0, sizeof(l));
  l.size = sizeof(l);
  l.flags = 1 + below(15);
  if (xioctl(conn_fd, 9, &l) == 0) {
    if (!in_pool(l.offset, l.list_size)) violation("NAME_LIST offset %" PRIu64 " outside the pool", l.offset);
    else free_off(l.offset);
  }
}

static void names_matches(void) {
  uint8_t *w = buf;
  memset(buf, 0, 256);
  struct kdbus_cmd_name *n = (void *)w;
  w += sizeof(*n);
  struct kdbus_item *it = add_item(&w, KDBUS_ITEM_NAME, 8);
  snprintf(it->str, 8, "fz.n%d", (int)below(4));
  n->size = (uint64_t)(w - buf);
  n->flags = below(8);
  xioctl(conn_fd, chance(60) ? 7 : 8, n);
  struct kdbus_cmd_match *m = (void *)buf;
  memset(buf, 0, 256);
  w = buf + sizeof(*m);
  m->cookie = below(4);
  if (chance(50)) {
    it = add_item(&w, chance(50) ? KDBUS_ITEM_ID_ADD : KDBUS_ITEM_NAME_ADD, sizeof(struct kdbus_notify_id_change));
    it->id_change.id = KDBUS_MATCH_ID_ANY;
    if (it->type == KDBUS_ITEM_NAME_ADD) { it->size = ITEM_HDR + sizeof(struct kdbus_notify_name_change); w = buf + sizeof(*m) + ALIGN8(it->size); }
  } else {
    it = add_item(&w, KDBUS_ITEM_BLOOM_MASK, 8 + BLOOM);
  }
  m->size = (uint64_t)(w - buf);
  xioctl(conn_fd, chance(70) ? 14 : 15, m);
}

static void worker(uint64_t seed, int uid, uint64_t iters, int64_t deadline) {
  rs = seed;
  signal(SIGALRM, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  if (uid) {
    gid_t g = (gid_t)uid;
    if (setgroups(1, &g) || setresgid(g, g, g) || setresuid(uid, uid, uid)) { perror("setresuid"); _exit(2); }
  }
  arena = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(arena, tag_of(getpid()), 4096);
  guard = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(guard, tag_of(getpid()), 4096);
  mprotect(guard + 4096, 4096, PROT_NONE);
  unmapped = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(unmapped, 4096);
  ctl_fd = open(ctlpath, O_RDWR | O_CLOEXEC);
  hello();
  for (uint64_t i = 0; __atomic_load_n(&S->requests, __ATOMIC_RELAXED) < iters; i++) {
    if ((i & 15) == 0) {
      struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
      if ((int64_t)ts.tv_sec >= deadline) break;
    }
    S->cur_seed[slot] = rs;
    alarm(WATCHDOG); /* every step, ioctl or open/close/mmap, must finish in time */
    if (conn_fd < 0 && chance(70)) { hello(); continue; }
    uint64_t a = below(100);
    if (a < 25) { if (conn_fd >= 0) send_marked(chance(25)); }
    else if (a < 45) { if (conn_fd >= 0) do_recv(chance(15)); }
    else if (a < 75) fuzz_request();
    else if (a < 80) { if (conn_fd >= 0) info_valid(); }
    else if (a < 85) { if (conn_fd >= 0) names_matches(); }
    else if (a < 88) { if (conn_fd >= 0) { xioctl(conn_fd, 3, NULL); if (chance(50)) drop_conn(); } }
    else if (a < 91) hello();
    else if (a < 93) drop_conn();
    else if (a < 96) { /* open / close stray fds */
      int k = (int)below(4);
      OP(OP_CLOSE);
      if (extra_fds[k] >= 0) close(extra_fds[k]);
      OP(OP_OPEN);
      extra_fds[k] = open(chance(50) ? buspath : ctlpath, O_RDWR | O_CLOEXEC);
      OP(0);
    } else if (a < 98) { /* kill a sibling */
      pid_t p = S->pids[below(MAXP)];
      if (p > 0 && p != getpid() && kill(p, SIGKILL) == 0) INC(kills);
    } else { if (conn_fd >= 0) for (int k = 0; k < 4; k++) do_recv(0); }
  }
  // drain what is left so that the checks cover it
  alarm(WATCHDOG * 2);
  if (conn_fd >= 0) for (int k = 0; k < 64; k++) do_recv(0);
  OP(OP_OTHER);
  _exit(0);
}

static int64_t mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

static int make_bus(int fd, const char *name) {
  uint8_t *w = buf;
  memset(buf, 0, 512);
  struct kdbus_cmd_make *m = (void *)w;
  w += sizeof(*m);
  m->flags = KDBUS_MAKE_ACCESS_WORLD;
  struct kdbus_item *it = add_item(&w, KDBUS_ITEM_BLOOM_PARAMETER, sizeof(struct kdbus_bloom_parameter));
  it->bloom_parameter.size = BLOOM;
  it->bloom_parameter.n_hash = 1;
  it = add_item(&w, KDBUS_ITEM_MAKE_NAME, strlen(name) + 1);
  strcpy(it->str, name);
  m->size = (uint64_t)(w - buf);
  return ioctl(fd, KDBUS_CMD_BUS_MAKE, m);
}

static int fuzz_main(uint64_t seed, int nprocs, uint64_t iters, int secs) {
  if (nprocs > MAXP) nprocs = MAXP;
  nworkers = nprocs;
  snprintf(busname, sizeof(busname), "0-fuzz-%" PRIu64, seed);
  snprintf(ctlpath, sizeof(ctlpath), "%s/control", dir);
  snprintf(buspath, sizeof(buspath), "%s/%s/bus", dir, busname);
  int cfd = open(ctlpath, O_RDWR | O_CLOEXEC);
  if (cfd < 0 || make_bus(cfd, busname) < 0) { perror("BUS_MAKE"); return 2; }
  int64_t deadline = mono() + secs;
  uint64_t gen[MAXP] = {0};
  int64_t zsince[MAXP] = {0};
  int live = 0;
  for (;;) {
    for (int i = 0; i < nprocs; i++) {
      if (S->pids[i] || S->requests >= iters || mono() >= deadline) continue;
      uint64_t ws = mix(seed, (uint64_t)i * 1000003 + gen[i]++);
      int uid = i % 3 == 1 ? 65534 : i % 3 == 2 ? 65533 : 0;
      pid_t p = fork();
      if (p == 0) { slot = i; worker(ws, uid, iters, deadline); }
      if (p > 0) { S->pids[i] = p; S->cur_seed[i] = ws; INC(procs); live++; }
    }
    if (!live) break;
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0 && errno != EINTR) break;
    if (p <= 0) {
      usleep(20000);
      int64_t now = mono();
      for (int i = 0; i < nprocs; i++) {
        if (!S->pids[i]) continue;
        char path[64], line[512];
        snprintf(path, sizeof(path), "/proc/%d/status", S->pids[i]);
        FILE *f = fopen(path, "r");
        int zombie = 0, tracer = 0;
        if (f) {
          while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "State:", 6) && strchr(line, 'Z')) zombie = 1;
            if (!strncmp(line, "TracerPid:", 10)) tracer = atoi(line + 10);
          }
          fclose(f);
        }
        if (zombie && tracer) {
          /* dead, but still traced: its exit status goes to the tracer, not to us */
          if (!zsince[i]) zsince[i] = now;
          if (now - zsince[i] >= 3) {
            fprintf(stderr, "ZOMBIE slot=%d pid=%d: dead and still traced by %d for %lld s; never reaped by its tracer\n",
                    i, S->pids[i], tracer, (long long)(now - zsince[i]));
            INC(zombies);
            S->pids[i] = 0; S->ids[i] = 0; zsince[i] = 0; live--;
          }
        } else zsince[i] = 0;
        if (S->pids[i] && now > deadline + 3 * WATCHDOG) {
          uint64_t c = S->cur_cmd[i];
          fprintf(stderr, "STUCK slot=%d pid=%d: still running %lld s after the deadline, in %s (seed %" PRIu64 ")\n", i,
                  S->pids[i], (long long)(now - deadline), c == 0 ? "?" : c <= 16 ? cmdnames[c - 1] : opnames[c - 17], S->cur_seed[i]);
          INC(hangs);
          kill(S->pids[i], SIGKILL);
          S->pids[i] = 0; S->ids[i] = 0; live--;
        }
      }
      continue;
    }
    for (int i = 0; i < MAXP; i++) {
      if (S->pids[i] != p) continue;
      S->pids[i] = 0;
      S->ids[i] = 0;
      zsince[i] = 0;
      live--;
      if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
        uint64_t c = S->cur_cmd[i];
        fprintf(stderr, "HANG slot=%d pid=%d: %s did not return within %d s (worker seed %" PRIu64 ")\n", i, p,
                c == 0 ? "?" : c <= 16 ? cmdnames[c - 1] : opnames[c - 17], WATCHDOG, S->cur_seed[i]);
        INC(hangs);
      } else if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL) {
        fprintf(stderr, "CRASH slot=%d pid=%d: signal %d\n", i, p, WTERMSIG(st));
        INC(violations);
      } else if (WIFEXITED(st) && WEXITSTATUS(st)) {
        fprintf(stderr, "worker slot=%d exited %d\n", i, WEXITSTATUS(st));
        INC(violations);
      }
    }
  }
  close(cfd);
  printf("requests=%" PRIu64 " badptr=%" PRIu64 " kills=%" PRIu64 " procs=%" PRIu64 " sent=%" PRIu64 " recv=%" PRIu64
         " notif=%" PRIu64 " fuzzrecv=%" PRIu64 " hangs=%" PRIu64 " violations=%" PRIu64 " zombies=%" PRIu64 " ok=%" PRIu64
         " errs=%" PRIu64 "\n",
         S->requests, S->badptr, S->kills, S->procs, S->sent, S->recv, S->notif, S->fuzzrecv, S->hangs, S->violations,
         S->zombies, S->ok, S->errs);
  printf("percmd");
  for (int i = 0; i < 16; i++) printf(" %s=%" PRIu64, cmdnames[i], S->percmd[i]);
  printf("\n");
  fflush(stdout);
  return S->hangs || S->violations ? 1 : 0;
}

// ---- the checker ----

static int check_main(const char *name) {
  snprintf(ctlpath, sizeof(ctlpath), "%s/control", dir);
  snprintf(buspath, sizeof(buspath), "%s/%s/bus", dir, name);
  alarm(30);
  int cfd = open(ctlpath, O_RDWR | O_CLOEXEC);
  if (cfd < 0 || make_bus(cfd, name) < 0) { perror("check: BUS_MAKE"); return 1; }
  uint8_t *pools[2];
  uint64_t ids[2];
  int fds[2];
  for (int k = 0; k < 2; k++) {
    fds[k] = open(buspath, O_RDWR | O_CLOEXEC);
    struct kdbus_cmd_hello h;
    memset(&h, 0, sizeof(h));
    h.size = sizeof(h);
    h.flags = KDBUS_HELLO_ACCEPT_FD;
    h.pool_size = POOL;
    if (fds[k] < 0 || ioctl(fds[k], KDBUS_CMD_HELLO, &h) < 0) { perror("check: HELLO"); return 1; }
    ids[k] = h.id;
    pools[k] = mmap(NULL, POOL, PROT_READ, MAP_SHARED, fds[k], 0);
    if (pools[k] == MAP_FAILED) { perror("check: mmap"); return 1; }
  }
  static uint8_t data[3][5000], all[15000];
  uint64_t sizes[3] = {1, 4099, 777}, total = 0;
  for (int v = 0; v < 3; v++)
    for (uint64_t k = 0; k < sizes[v]; k++) all[total++] = data[v][k] = pat(v + 41, k);
  uint8_t mfd_data[3000];
  for (int k = 0; k < 3000; k++) mfd_data[k] = all[total++] = pat(99, k);
  int mfd = make_memfd(mfd_data, 3000, 1);
  uint8_t mb[1024] __attribute__((aligned(8)));
  uint8_t *w = mb;
  memset(mb, 0, sizeof(mb));
  struct kdbus_msg *m = (void *)w;
  m->dst_id = ids[1];
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->cookie = 4242;
  w += sizeof(*m);
  for (int v = 0; v < 3; v++) {
    struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
    it->vec.address = (uintptr_t)data[v];
    it->vec.size = sizeof(data[v]) < sizes[v] ? 0 : sizes[v];
  }
  struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_MEMFD, sizeof(struct kdbus_memfd));
  it->memfd.size = 3000;
  it->memfd.fd = mfd;
  m->size = (uint64_t)(w - mb);
  struct kdbus_cmd_send s = {.size = sizeof(s), .msg_address = (uintptr_t)m};
  if (ioctl(fds[0], KDBUS_CMD_SEND, &s) < 0) { perror("check: SEND"); return 1; }
  struct kdbus_cmd_recv r = {.size = sizeof(r)};
  if (ioctl(fds[1], KDBUS_CMD_RECV, &r) < 0) { perror("check: RECV"); return 1; }
  if (!in_pool(r.msg.offset, r.msg.msg_size)) { fprintf(stderr, "check: offset outside the pool\n"); return 1; }
  const struct kdbus_msg *got = (const void *)(pools[1] + r.msg.offset);
  if (got->src_id != ids[0] || got->dst_id != ids[1] || got->cookie != 4242) { fprintf(stderr, "check: header differs\n"); return 1; }
  static uint8_t rcv[15000];
  uint64_t n = 0;
  for (const struct kdbus_item *i = got->items; (const uint8_t *)i < (const uint8_t *)got + got->size;
       i = (const void *)((const uint8_t *)i + ALIGN8(i->size))) {
    if (i->size < ITEM_HDR) break;
    if (getenv("FZ_DEBUG")) fprintf(stderr, "item type=%llx size=%llu a=%llu b=%llu\n", (unsigned long long)i->type, (unsigned long long)i->size, (unsigned long long)i->data64[0], (unsigned long long)i->data64[1]);
    if (i->type == KDBUS_ITEM_PAYLOAD_OFF && i->vec.offset != ~0ULL) {
      if (n + i->vec.size > sizeof(rcv)) { fprintf(stderr, "check: too much payload\n"); return 1; }
      memcpy(rcv + n, pools[1] + i->vec.offset, i->vec.size); /* pool-relative, as in ipc/kdbus/queue.c */
      n += i->vec.size;
    } else if (i->type == KDBUS_ITEM_PAYLOAD_MEMFD) {
      if (n + i->memfd.size > sizeof(rcv) || pread(i->memfd.fd, rcv + n, i->memfd.size, (off_t)i->memfd.start) != (ssize_t)i->memfd.size) {
        fprintf(stderr, "check: memfd read\n"); return 1;
      }
      n += i->memfd.size;
      close(i->memfd.fd);
    }
  }
  for (uint64_t k = 0; k < n && k < total; k++) if (rcv[k] != all[k]) { fprintf(stderr, "check: first difference at byte %" PRIu64 ": got 0x%02x want 0x%02x\n", k, rcv[k], all[k]); break; }
  if (n != total || memcmp(rcv, all, total)) { fprintf(stderr, "check: payload differs (%" PRIu64 " of %" PRIu64 " bytes)\n", n, total); return 1; }
  struct kdbus_cmd_free f = {.size = sizeof(f), .offset = r.msg.offset};
  if (ioctl(fds[1], KDBUS_CMD_FREE, &f) < 0) { perror("check: FREE"); return 1; }
  printf("check ok bytes=%" PRIu64 "\n", n);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (S == MAP_FAILED) return 2;
  if (argc == 7 && !strcmp(argv[1], "fuzz")) {
    dir = argv[2];
    return fuzz_main(strtoull(argv[3], NULL, 0), atoi(argv[4]), strtoull(argv[5], NULL, 0), atoi(argv[6]));
  }
  if (argc == 4 && !strcmp(argv[1], "check")) {
    dir = argv[2];
    return check_main(argv[3]);
  }
  fprintf(stderr, "usage: fuzz-client fuzz DIR SEED NPROCS ITERS SECONDS | check DIR NAME\n");
  return 2;
}
