// soak-client: mixed kdbus traffic over many connections for a given time,
// with every message counted (test/soak.test.ts, bench/soak.sh). Written
// against the kdbus ABI only (include/kdbus-abi.h).
//
//   soak-client DIR SECONDS CONNS [--rate N] [--warmup S] [--sample S]
//               [--kill-every S] [--server-pid PID] [--seed N]
//
// As root: BUS_MAKE 0-soak-PID (MAKE_ACCESS_WORLD, 64-bit bloom) on
// DIR/control and a policy holder granting the world OWN (so TALK and SEE) on
// "soak.*". Then ceil(CONNS / 8) worker processes of 8 connections each,
// under uids 0, 65534 and 65533 in turn:
//   - 2 service workers: stable connections that own soak.svcN and answer
//     synchronous calls;
//   - 2 killable workers: every connection churns and closes abruptly, and
//     the driver SIGKILLs one of them every --kill-every seconds (default
//     20), possibly parked in a synchronous call, and starts it again;
//   - the others: half stable connections, half churning ones that close
//     after a random lifetime, either gracefully (matches removed, queue
//     drained, BYEBYE) or abruptly (close without BYEBYE).
// Every connection owns soak.c<CID> (what lets other uids talk to it) and
// every stable one has a bloom-mask match for one of 16 topics. The workers
// do, at --rate actions per second in all (default 1000): unicasts by id and
// by well-known name (1 to 3 PAYLOAD_VECs; 2% with a sealed PAYLOAD_MEMFD,
// 0.5% with an fd), bloom-filtered broadcasts, asynchronous calls (every
// receiver replies), synchronous calls to the services, NAME_ACQUIRE and
// NAME_RELEASE of soak.nK (queueing, replacement), MATCH_ADD/REMOVE (bloom
// and ID_ADD/ID_REMOVE notifications), CONN_INFO and NAME_LIST.
//
// Counting. Every message carries a unique id (mid; broadcasts: bmid) in a
// header followed by pattern bytes derived from it. A ledger in shared memory
// holds, per mid, the destination connection (its CID, or 0 by name), the
// sender's outcome (attempting, queued = SEND returned 0, refused, maybe = a
// synchronous call that failed after it may have been queued) and how often
// it was received. At the end every queued message must have been received
// exactly once, unless its receiver was closed abruptly or killed (then it
// counts as discarded). A broadcast must reach every stable subscriber of its
// topic exactly once, or be among the drops that subscriber was told of
// (RECV's EOVERFLOW and dropped_msgs). Receivers also check the payload byte
// for byte, that it was meant for them, and that messages from one sender
// arrive in the order sent. Nothing received may be a message whose SEND
// failed (phantom). An asynchronous call ends with one reply, one
// REPLY_TIMEOUT or REPLY_DEAD (two for a request still unread when its
// receiver went: kdbus_conn_disconnect reports it from the dying queue and
// from the waiter's reply list), or with nothing if the caller left first.
//
// Phases: warm-up traffic; at --warmup seconds (default 60) the traffic is
// paused and drained ("quiesce label=warmup"), then resumed until SECONDS;
// then paused and drained again ("quiesce label=end"), every connection
// drains its queue and says BYEBYE, and the ledger is checked. With
// --server-pid, the server's VmRSS, the Rss of its pool mappings
// (/memfd:kdbusfs-pool), their difference (net) and its fd count are
// printed at each quiesce and every --sample seconds (default 10).
//
// Output: "sample ..." and "quiesce ..." lines, then "result KEY=N ..." lines
// and "verdict ok" or "verdict FAIL: reasons". Exit 0 on "verdict ok".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"

#define MAGIC 0x6b64627573736f6bULL
#define PER_WORKER 8
#define POOL (1 << 20)
#define BLOOM 8          /* bytes: 64 bits, one per topic (16 used) */
#define TOPICS 16
#define NAMES 24         /* soak.n0 .. soak.n23, acquired and released */
#define MAX_WORKERS 256
#define MAX_MSGS (16u << 20)
#define MAX_BCAST (2u << 20)
#define MAX_CIDS (1u << 20)
#define MAX_STABLE 1024
#define WATCHDOG 90      /* seconds: no loop iteration of a worker may take longer */
#define SYNC_TIMEOUT_NS (15ULL * 1000000000)
#define ASYNC_TIMEOUT_NS (3ULL * 1000000000)
#define MAX_PAYLOAD 16384
#define LAZY_NS (2ULL * 1000000000)

// ---- the ledger and counters (MAP_SHARED, written by every process) ----

enum { ST_NONE, ST_ATTEMPT, ST_QUEUED, ST_REFUSED, ST_MAYBE };
enum { K_UNI = 1, K_NAME, K_ACALL, K_SCALL, K_REPLY, K_BCAST };
enum { CS_NONE, CS_ALIVE, CS_BYE, CS_ABRUPT, CS_KILLED };
enum { F_STABLE = 1, F_GRACEFUL, F_ABRUPT };
enum { R_SERVICE = 1, R_KILLABLE, R_NORMAL };
enum { P_RUN, P_QUIET, P_DRAIN, P_END };

/* outcome of an asynchronous call: replies in bits 0-1, REPLY_TIMEOUTs in
 * bits 2-3, REPLY_DEADs in bits 4-5 */
struct msgrec { uint32_t dst_cid; uint8_t status, recv, kind, outcome; };
#define O_REPLY 1
#define O_TIMEOUT 4
#define O_DEAD 16
struct bcastrec { uint32_t src_cid; uint8_t status, topic, pad[2]; };
struct cidrec { uint32_t kid; int32_t pid; uint16_t worker; uint8_t fate, state; int32_t stable; };
struct stablerec { uint32_t cid, topic; uint64_t recv, dups, dropped; };

#define COUNTERS(X) \
  X(uni_queued) X(uni_refused) X(name_queued) X(name_refused) X(acall_queued) X(acall_refused) \
  X(scall_ok) X(scall_maybe) X(scall_refused) X(reply_queued) X(reply_refused) \
  X(bcast_queued) X(bcast_refused) X(recv) X(recv_sync_reply) X(bcast_recv_stable) X(bcast_recv_churn) \
  X(notif_timeout) X(notif_dead) X(notif_id) X(notif_other) \
  X(dup) X(corrupt) X(misdelivered) X(reordered) X(bcast_dup) X(foreign) X(misattributed) X(metadata_checked) \
  X(dropped_stable) X(dropped_churn) \
  X(memfd_sent) X(fds_sent) X(memfd_recv) X(fds_recv) X(fds_missing) \
  X(name_acquired) X(name_in_queue) X(name_acquire_err) X(name_released) X(name_release_err) X(unique_names) \
  X(match_add) X(match_add_err) X(match_remove) X(match_remove_err) \
  X(info_ok) X(info_err) X(list_ok) X(list_err) \
  X(conns_opened) X(conns_bye) X(conns_abrupt) X(conns_killed) X(bye_ebusy) X(bye_failed) X(open_failed) \
  X(workers_killed) X(worker_deaths) X(hangs) X(unexpected) X(capped)

#define ENUM(n) C_##n,
enum { COUNTERS(ENUM) NCTR };
#define NAME(n) #n,
static const char *ctrname[] = {COUNTERS(NAME)};

struct shared {
  uint64_t ctr[NCTR];
  uint64_t send_errno[140];
  uint64_t next_mid, next_bmid, next_cid, nstable;
  volatile int phase, phase_seq;
  volatile int ack[MAX_WORKERS];
  volatile uint64_t dir[MAX_WORKERS * PER_WORKER]; /* kid | cid << 32 of published connections */
  volatile uint64_t svc[MAX_WORKERS * PER_WORKER]; /* the same for services */
  int nsvc;
  struct stablerec stable[MAX_STABLE];
};
static struct shared *S;
static struct msgrec *M;
static struct bcastrec *B;
static struct cidrec *CID;
static uint8_t *BITS; /* MAX_STABLE bitmaps of MAX_BCAST bits: broadcasts received by each stable subscriber */

#define INC(n) __atomic_fetch_add(&S->ctr[C_##n], 1, __ATOMIC_RELAXED)
#define ADD(n, v) __atomic_fetch_add(&S->ctr[C_##n], (v), __ATOMIC_RELAXED)
#define GET(n) __atomic_load_n(&S->ctr[C_##n], __ATOMIC_RELAXED)

static void *shared_map(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) { perror("mmap shared"); exit(2); }
  return p;
}

// ---- small things ----

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) {
  rs ^= rs >> 12; rs ^= rs << 25; rs ^= rs >> 27;
  return rs * 2685821657736338717ULL;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static int chance(double pct) { return (double)below(1000000) < pct * 10000; }
static inline uint8_t pat(uint64_t mid, uint64_t k) { return (uint8_t)(k * 131 + (k >> 8) * 7 + mid * 17 + (mid >> 11) + 1); }

static int worker_index = -1;
static void report(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *kind, const char *fmt, ...) {
  static int printed;
  if (printed++ > 40) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s worker=%d pid=%d: ", kind, worker_index, getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}
#define UNEXPECTED(...) do { INC(unexpected); report("UNEXPECTED", __VA_ARGS__); } while (0)

// ---- connections of this worker ----

static char buspath[512];
static int role, nworkers;
static uint32_t uids[MAX_WORKERS]; /* of each worker, set before any is started */
static uint64_t rate_per_worker_ns;

struct seen { uint32_t src_cid; uint32_t pad; uint64_t last_mid, last_bmid; };
#define SEEN 256

struct conn {
  int fd;
  uint8_t *pool;
  uint64_t kid;
  uint32_t cid;
  int fate, stable, topic, slot;
  int lazy;               /* drains only every LAZY_NS in the run: quotas and drops come into play */
  uint64_t drain_at;
  uint64_t close_at;      /* churning: when it closes */
  int pending_calls;
  struct seen seen[SEEN]; /* per sender: the last mid and bmid received (FIFO check) */
};
static struct conn conns[PER_WORKER];

static void kfree(struct conn *c, uint64_t off) {
  struct kdbus_cmd_free f = {.size = sizeof(f), .offset = off};
  if (ioctl(c->fd, KDBUS_CMD_FREE, &f) < 0) UNEXPECTED("FREE %" PRIu64 ": %s", off, ename(errno));
}

static struct seen *seen_of(struct conn *c, uint32_t src) {
  unsigned h = (src * 2654435761u) % SEEN;
  for (int i = 0; i < SEEN; i++) {
    struct seen *s = &c->seen[(h + i) % SEEN];
    if (s->src_cid == src) return s;
    if (s->src_cid == 0) { s->src_cid = src; return s; }
  }
  memset(c->seen, 0, sizeof(c->seen)); /* full: forget, the check restarts */
  c->seen[h].src_cid = src;
  return &c->seen[h];
}

// ---- the payload: a header, then pattern bytes ----

struct hdr {
  uint64_t magic, mid;
  uint32_t kind, src_cid, dst_cid, len;
  uint64_t src_kid, req_mid;
};

static uint8_t stream[sizeof(struct hdr) + MAX_PAYLOAD];

static uint64_t payload_len(void) {
  if (chance(70)) return below(257);
  if (chance(85)) return 256 + below(3841);
  return 4096 + below(MAX_PAYLOAD - 4096 + 1);
}

struct out {
  uint8_t buf[1024] __attribute__((aligned(8)));
  uint8_t *w;
  struct kdbus_msg *m;
  int memfd, fd;
};

static struct kdbus_item *add_item(struct out *o, uint64_t type, uint64_t size) {
  struct kdbus_item *it = (void *)o->w;
  memset(it, 0, ALIGN8(ITEM_HDR + size));
  it->size = ITEM_HDR + size;
  it->type = type;
  o->w += ALIGN8(it->size);
  return it;
}

static void add_dst_name(struct out *o, const char *name) {
  struct kdbus_item *it = add_item(o, KDBUS_ITEM_DST_NAME, strlen(name) + 1);
  strcpy(it->str, name);
}

static int make_memfd(const uint8_t *data, uint64_t len) {
  int fd = (int)syscall(SYS_memfd_create, "soak", 3 /* CLOEXEC | ALLOW_SEALING */);
  if (fd < 0) return -1;
  if (write(fd, data, len) != (ssize_t)len ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A message from c: header + len pattern bytes over 1-3 vectors, or the
 * header in a vector and the pattern in a sealed memfd; optionally an fd. */
static void build(struct out *o, struct conn *c, uint64_t dst_id, uint64_t mid, int kind, uint32_t dst_cid,
                  uint64_t req_mid, uint64_t len, int with_memfd, int with_fd) {
  struct hdr h = {MAGIC, mid, (uint32_t)kind, c->cid, dst_cid, (uint32_t)len, c->kid, req_mid};
  memcpy(stream, &h, sizeof(h));
  for (uint64_t k = 0; k < len; k++) stream[sizeof(h) + k] = pat(mid, k);
  o->w = o->buf;
  o->m = (void *)o->w;
  memset(o->m, 0, sizeof(*o->m));
  o->m->dst_id = dst_id;
  o->m->payload_type = KDBUS_PAYLOAD_DBUS;
  o->m->cookie = mid;
  o->w += sizeof(*o->m);
  o->memfd = o->fd = -1;
  uint64_t total = sizeof(h) + len;
  if (with_memfd && len > 0 && (o->memfd = make_memfd(stream + sizeof(h), len)) >= 0) {
    struct kdbus_item *it = add_item(o, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
    it->vec.address = (uintptr_t)stream;
    it->vec.size = sizeof(h);
    it = add_item(o, KDBUS_ITEM_PAYLOAD_MEMFD, sizeof(struct kdbus_memfd));
    it->memfd.size = len;
    it->memfd.fd = o->memfd;
    INC(memfd_sent);
  } else {
    uint64_t a = below(total + 1), b = a + below(total - a + 1);
    uint64_t cut[4] = {0, a, b, total};
    for (int k = 0; k < 3; k++) {
      if (cut[k + 1] == cut[k]) continue;
      struct kdbus_item *it = add_item(o, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
      it->vec.address = (uintptr_t)(stream + cut[k]);
      it->vec.size = cut[k + 1] - cut[k];
    }
  }
  if (with_fd && (o->fd = eventfd(7, EFD_CLOEXEC)) >= 0) {
    struct kdbus_item *it = add_item(o, KDBUS_ITEM_FDS, sizeof(int));
    it->fds[0] = o->fd;
    INC(fds_sent);
  }
}

static void finish(struct out *o) { o->m->size = (uint64_t)(o->w - o->buf); }
static void release(struct out *o) {
  if (o->memfd >= 0) close(o->memfd);
  if (o->fd >= 0) close(o->fd);
}

static int do_send(struct conn *c, struct out *o, uint64_t flags, struct kdbus_cmd_send *cmd) {
  finish(o);
  memset(cmd, 0, sizeof(*cmd));
  cmd->size = sizeof(*cmd);
  cmd->flags = flags;
  cmd->msg_address = (uintptr_t)o->m;
  int r = ioctl(c->fd, KDBUS_CMD_SEND, cmd);
  int e = r < 0 ? errno : 0;
  release(o);
  if (e) __atomic_fetch_add(&S->send_errno[e < 140 ? e : 0], 1, __ATOMIC_RELAXED);
  return e;
}

/* Errors a SEND may meet in this traffic without anything being wrong. */
static int send_refusal(int e) {
  return e == ENXIO || e == ENOBUFS || e == EXFULL || e == ECONNRESET || e == ESRCH || e == EMLINK ||
         e == EPIPE || e == EADDRNOTAVAIL;
}

static uint64_t new_mid(uint32_t dst_cid, int kind) {
  uint64_t mid = __atomic_add_fetch(&S->next_mid, 1, __ATOMIC_RELAXED);
  if (mid >= MAX_MSGS) { INC(capped); return 0; }
  M[mid].dst_cid = dst_cid;
  M[mid].kind = (uint8_t)kind;
  __atomic_store_n(&M[mid].status, ST_ATTEMPT, __ATOMIC_RELEASE);
  return mid;
}

static void set_status(uint64_t mid, int st) { __atomic_store_n(&M[mid].status, (uint8_t)st, __ATOMIC_RELEASE); }

// ---- receiving ----

static void send_reply(struct conn *c, const struct kdbus_msg *req, const struct hdr *h);

/* Checks and counts one message (from the queue, or a synchronous reply);
 * the slice is freed by the caller. Returns the header's mid of a valid
 * message, 0 otherwise. */
static uint64_t take(struct conn *c, const struct kdbus_msg *msg, int sync_reply) {
  static uint8_t data[sizeof(struct hdr) + MAX_PAYLOAD];
  if (msg->src_id == KDBUS_SRC_ID_KERNEL) {
    for (const struct kdbus_item *it = msg->items; (const uint8_t *)it + ITEM_HDR <= (const uint8_t *)msg + msg->size && it->size >= ITEM_HDR;
         it = ITEM_NEXT(it)) {
      if (it->type == KDBUS_ITEM_REPLY_TIMEOUT || it->type == KDBUS_ITEM_REPLY_DEAD) {
        if (it->type == KDBUS_ITEM_REPLY_TIMEOUT) INC(notif_timeout); else INC(notif_dead);
        uint64_t mid = msg->cookie_reply;
        if (mid && mid < MAX_MSGS && M[mid].kind == K_ACALL) {
          __atomic_fetch_add(&M[mid].outcome, it->type == KDBUS_ITEM_REPLY_DEAD ? O_DEAD : O_TIMEOUT, __ATOMIC_RELAXED);
          c->pending_calls--;
        } else {
          INC(foreign);
          report("FOREIGN", "reply notification for cookie %" PRIu64 " that is no call of ours", mid);
        }
      } else if (it->type == KDBUS_ITEM_ID_ADD || it->type == KDBUS_ITEM_ID_REMOVE) {
        INC(notif_id);
      } else if (it->type >= _KDBUS_ITEM_KERNEL_BASE) {
        INC(notif_other);
      }
    }
    return 0;
  }
  uint64_t n = 0;
  int64_t meta_uid = -1, meta_pid = -1;
  int fds = 0, bad = 0;
  for (const struct kdbus_item *it = msg->items; (const uint8_t *)it + ITEM_HDR <= (const uint8_t *)msg + msg->size; it = ITEM_NEXT(it)) {
    if (it->size < ITEM_HDR) { bad = 1; break; }
    if (it->type == KDBUS_ITEM_CREDS) meta_uid = it->creds.euid;
    if (it->type == KDBUS_ITEM_PIDS) meta_pid = (int64_t)it->pids.pid;
    if (it->type == KDBUS_ITEM_PAYLOAD_OFF) {
      if (it->vec.offset == ~0ULL) continue;
      if (it->vec.offset > POOL || it->vec.size > POOL - it->vec.offset || n + it->vec.size > sizeof(data)) { bad = 1; continue; }
      memcpy(data + n, c->pool + it->vec.offset, it->vec.size);
      n += it->vec.size;
    } else if (it->type == KDBUS_ITEM_PAYLOAD_MEMFD) {
      INC(memfd_recv);
      if (it->memfd.fd < 0 || n + it->memfd.size > sizeof(data) ||
          pread(it->memfd.fd, data + n, it->memfd.size, (off_t)it->memfd.start) != (ssize_t)it->memfd.size) bad = 1;
      else n += it->memfd.size;
      if (it->memfd.fd >= 0) close(it->memfd.fd);
    } else if (it->type == KDBUS_ITEM_FDS) {
      for (uint64_t k = 0; k < (it->size - ITEM_HDR) / sizeof(int); k++) {
        fds++;
        if (it->fds[k] < 0) { INC(fds_missing); continue; }
        uint64_t v = 0;
        if (read(it->fds[k], &v, sizeof(v)) != sizeof(v) || v != 7) bad = 1;
        close(it->fds[k]);
      }
    }
  }
  if (fds) INC(fds_recv);
  struct hdr h;
  if (bad || n < sizeof(h)) { INC(corrupt); report("CORRUPT", "message from %" PRIu64 ": %" PRIu64 " payload bytes, bad=%d", (uint64_t)msg->src_id, n, bad); return 0; }
  memcpy(&h, data, sizeof(h));
  if (h.magic != MAGIC || n != sizeof(h) + h.len) { INC(corrupt); report("CORRUPT", "message from %" PRIu64 ": magic %" PRIx64 " len %u of %" PRIu64, (uint64_t)msg->src_id, h.magic, h.len, n); return 0; }
  for (uint64_t k = 0; k < h.len; k++)
    if (data[sizeof(h) + k] != pat(h.mid, k)) { INC(corrupt); report("CORRUPT", "mid %" PRIu64 ": byte %" PRIu64 " differs", h.mid, k); return 0; }
  if (h.src_kid != msg->src_id) { INC(misdelivered); report("MISDELIVERED", "mid %" PRIu64 " says src %" PRIu64 ", kdbus says %" PRIu64, h.mid, h.src_kid, (uint64_t)msg->src_id); }
  /* metadata, when asked for, names the sending process and its uid */
  if (meta_pid >= 0 || meta_uid >= 0) INC(metadata_checked);
  if (h.src_cid && h.src_cid < MAX_CIDS &&
      ((meta_pid >= 0 && meta_pid != CID[h.src_cid].pid) || (meta_uid >= 0 && meta_uid != uids[CID[h.src_cid].worker]))) {
    INC(misattributed);
    report("MISATTRIBUTED", "mid %" PRIu64 " from cid %u (pid %d, uid %u): metadata pid %" PRId64 " uid %" PRId64, h.mid, h.src_cid,
           CID[h.src_cid].pid, uids[CID[h.src_cid].worker], meta_pid, meta_uid);
  }
  if (h.kind == K_BCAST) {
    if (sync_reply || h.mid == 0 || h.mid >= MAX_BCAST || msg->dst_id != KDBUS_DST_ID_BROADCAST) { INC(misdelivered); return 0; }
    struct seen *s = seen_of(c, h.src_cid);
    if (h.mid <= s->last_bmid) { INC(reordered); report("REORDERED", "broadcast %" PRIu64 " from cid %u after %" PRIu64, h.mid, h.src_cid, s->last_bmid); }
    s->last_bmid = h.mid;
    if (c->stable >= 0) {
      uint8_t *bits = BITS + (size_t)c->stable * (MAX_BCAST / 8);
      uint8_t bit = (uint8_t)(1u << (h.mid & 7));
      if (bits[h.mid >> 3] & bit) { INC(bcast_dup); S->stable[c->stable].dups++; report("DUP", "broadcast %" PRIu64 " twice at cid %u", h.mid, c->cid); }
      bits[h.mid >> 3] |= bit; /* only this process writes this bitmap */
      S->stable[c->stable].recv++;
      INC(bcast_recv_stable);
    } else {
      INC(bcast_recv_churn);
    }
    return h.mid;
  }
  if (h.mid == 0 || h.mid >= MAX_MSGS) { INC(corrupt); return 0; }
  if (h.dst_cid && h.dst_cid != c->cid) { INC(misdelivered); report("MISDELIVERED", "mid %" PRIu64 " for cid %u at cid %u", h.mid, h.dst_cid, c->cid); }
  if (!h.dst_cid && h.kind != K_NAME) { INC(misdelivered); report("MISDELIVERED", "mid %" PRIu64 " kind %u without a destination", h.mid, h.kind); }
  if (__atomic_fetch_add(&M[h.mid].recv, 1, __ATOMIC_RELAXED)) { INC(dup); report("DUP", "mid %" PRIu64 " (kind %u) received again at cid %u", h.mid, h.kind, c->cid); }
  if (sync_reply) {
    INC(recv_sync_reply);
  } else {
    INC(recv);
    struct seen *s = seen_of(c, h.src_cid);
    if (h.mid <= s->last_mid) { INC(reordered); report("REORDERED", "mid %" PRIu64 " from cid %u after %" PRIu64, h.mid, h.src_cid, s->last_mid); }
    s->last_mid = h.mid;
  }
  if (h.kind == K_REPLY && h.req_mid && h.req_mid < MAX_MSGS && M[h.req_mid].kind == K_ACALL) {
    __atomic_fetch_add(&M[h.req_mid].outcome, O_REPLY, __ATOMIC_RELAXED);
    c->pending_calls--;
  }
  if (!sync_reply && (msg->flags & KDBUS_MSG_EXPECT_REPLY)) {
    int phase = S->phase;
    if (phase == P_RUN || (phase == P_QUIET && h.kind == K_SCALL)) send_reply(c, msg, &h);
  }
  return h.mid;
}

/* RECV until the queue is empty (or max messages); returns how many were taken. */
static int drain(struct conn *c, int max) {
  int got = 0;
  while (got < max) {
    struct kdbus_cmd_recv r = {.size = sizeof(r)};
    if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) {
      if (errno == EAGAIN) break;
      if (errno == EOVERFLOW) {
        if (c->stable >= 0) { S->stable[c->stable].dropped += r.dropped_msgs; ADD(dropped_stable, r.dropped_msgs); }
        else ADD(dropped_churn, r.dropped_msgs);
        continue;
      }
      UNEXPECTED("RECV cid %u: %s", c->cid, ename(errno));
      break;
    }
    take(c, (const struct kdbus_msg *)(c->pool + r.msg.offset), 0);
    kfree(c, r.msg.offset);
    got++;
  }
  return got;
}

// ---- sending ----

static void send_reply(struct conn *c, const struct kdbus_msg *req, const struct hdr *h) {
  uint64_t mid = new_mid(h->src_cid, K_REPLY);
  if (!mid) return;
  struct out o;
  struct kdbus_cmd_send cmd;
  build(&o, c, req->src_id, mid, K_REPLY, h->src_cid, h->mid, below(200), 0, 0);
  o.m->cookie_reply = req->cookie;
  int e = do_send(c, &o, 0, &cmd);
  set_status(mid, e ? ST_REFUSED : ST_QUEUED);
  if (!e) INC(reply_queued);
  else {
    INC(reply_refused);
    /* EPERM: the call timed out or its caller is gone, so no reply is pending */
    if (!send_refusal(e) && e != EPERM) UNEXPECTED("reply SEND: %s", ename(e));
  }
}

/* A published connection (kid | cid << 32) other than c, or 0. */
static uint64_t pick(volatile uint64_t *table, int n, struct conn *c) {
  for (int tries = 0; tries < 8; tries++) {
    uint64_t e = table[below((uint64_t)n)];
    if (e && (uint32_t)(e >> 32) != c->cid) return e;
  }
  return 0;
}

static void act_unicast(struct conn *c, int call) {
  uint64_t e = pick(S->dir, nworkers * PER_WORKER, c);
  if (!e) return;
  uint32_t dcid = (uint32_t)(e >> 32);
  int kind = call ? K_ACALL : K_UNI;
  uint64_t mid = new_mid(dcid, kind);
  if (!mid) return;
  struct out o;
  struct kdbus_cmd_send cmd;
  build(&o, c, (uint32_t)e, mid, kind, dcid, 0, payload_len(), chance(2), chance(0.5));
  if (call) {
    o.m->flags = KDBUS_MSG_EXPECT_REPLY;
    o.m->timeout_ns = now_ns() + ASYNC_TIMEOUT_NS;
  }
  int err = do_send(c, &o, 0, &cmd);
  set_status(mid, err ? ST_REFUSED : ST_QUEUED);
  if (!err) {
    if (call) { INC(acall_queued); c->pending_calls++; } else INC(uni_queued);
  } else {
    if (call) INC(acall_refused); else INC(uni_refused);
    if (!send_refusal(err)) UNEXPECTED("SEND to %u (cid %u): %s", (uint32_t)e, dcid, ename(err));
  }
}

static void act_by_name(struct conn *c) {
  uint64_t mid = new_mid(0, K_NAME);
  if (!mid) return;
  struct out o;
  struct kdbus_cmd_send cmd;
  build(&o, c, KDBUS_DST_ID_NAME, mid, K_NAME, 0, 0, payload_len(), chance(2), chance(0.5));
  char name[16];
  snprintf(name, sizeof(name), "soak.n%d", (int)below(NAMES));
  add_dst_name(&o, name);
  int err = do_send(c, &o, 0, &cmd);
  set_status(mid, err ? ST_REFUSED : ST_QUEUED);
  if (!err) INC(name_queued);
  else {
    INC(name_refused);
    if (!send_refusal(err)) UNEXPECTED("SEND to a name: %s", ename(err));
  }
}

static void act_broadcast(struct conn *c) {
  uint64_t bmid = __atomic_add_fetch(&S->next_bmid, 1, __ATOMIC_RELAXED);
  if (bmid >= MAX_BCAST) { INC(capped); return; }
  int topic = (int)below(TOPICS);
  B[bmid].src_cid = c->cid;
  B[bmid].topic = (uint8_t)topic;
  __atomic_store_n(&B[bmid].status, ST_ATTEMPT, __ATOMIC_RELEASE);
  struct out o;
  struct kdbus_cmd_send cmd;
  build(&o, c, KDBUS_DST_ID_BROADCAST, bmid, K_BCAST, 0, 0, payload_len() / 4, 0, 0);
  o.m->flags = KDBUS_MSG_SIGNAL;
  struct kdbus_item *it = add_item(&o, KDBUS_ITEM_BLOOM_FILTER, sizeof(struct kdbus_bloom_filter) + BLOOM);
  it->bloom_filter.data[0] = 1ULL << topic;
  int err = do_send(c, &o, 0, &cmd);
  __atomic_store_n(&B[bmid].status, err ? ST_REFUSED : ST_QUEUED, __ATOMIC_RELEASE);
  if (!err) INC(bcast_queued);
  else {
    INC(bcast_refused);
    UNEXPECTED("broadcast SEND: %s", ename(err));
  }
}

static void act_sync_call(struct conn *c) {
  uint64_t e = pick(S->svc, S->nsvc, c);
  if (!e) return;
  uint32_t dcid = (uint32_t)(e >> 32);
  uint64_t mid = new_mid(dcid, K_SCALL);
  if (!mid) return;
  struct out o;
  struct kdbus_cmd_send cmd;
  int by_name = chance(50);
  build(&o, c, by_name ? KDBUS_DST_ID_NAME : (uint32_t)e, mid, K_SCALL, dcid, 0, payload_len(), chance(2), chance(0.5));
  if (by_name) {
    char name[24];
    snprintf(name, sizeof(name), "soak.svc%d", CID[dcid].stable);
    add_dst_name(&o, name);
  }
  o.m->flags = KDBUS_MSG_EXPECT_REPLY;
  o.m->timeout_ns = now_ns() + SYNC_TIMEOUT_NS;
  int err = do_send(c, &o, KDBUS_SEND_SYNC_REPLY, &cmd);
  if (!err) {
    set_status(mid, ST_QUEUED);
    INC(scall_ok);
    const struct kdbus_msg *r = (const void *)(c->pool + cmd.reply.offset);
    if (take(c, r, 1) && r->cookie_reply != mid) {
      INC(misdelivered);
      report("MISDELIVERED", "sync call %" PRIu64 " got the reply to %" PRIu64, mid, (uint64_t)r->cookie_reply);
    }
    kfree(c, cmd.reply.offset);
  } else if (err == ETIMEDOUT || err == ECONNRESET || err == EPIPE || err == ECANCELED || err == EINTR) {
    /* queued, but no reply came: the service may or may not have received it */
    set_status(mid, ST_MAYBE);
    INC(scall_maybe);
  } else {
    set_status(mid, ST_REFUSED);
    INC(scall_refused);
    if (!send_refusal(err)) UNEXPECTED("sync call SEND: %s", ename(err));
  }
}

static int name_cmd(struct conn *c, unsigned long ioc, const char *name, uint64_t flags, uint64_t *ret_flags) {
  struct { struct kdbus_cmd_name cmd; uint8_t items[64]; } __attribute__((aligned(8))) b;
  memset(&b, 0, sizeof(b));
  struct kdbus_item *it = b.cmd.items;
  it->type = KDBUS_ITEM_NAME;
  it->size = ITEM_HDR + strlen(name) + 1;
  strcpy(it->str, name);
  b.cmd.size = sizeof(b.cmd) + ALIGN8(it->size);
  b.cmd.flags = flags;
  int r = ioctl(c->fd, ioc, &b);
  if (ret_flags) *ret_flags = b.cmd.flags;
  return r < 0 ? errno : 0;
}

static void act_name(struct conn *c) {
  char name[32];
  snprintf(name, sizeof(name), "soak.n%d", (int)below(NAMES));
  if (chance(50)) {
    uint64_t flags = below(8) & (KDBUS_NAME_REPLACE_EXISTING | KDBUS_NAME_ALLOW_REPLACEMENT | KDBUS_NAME_QUEUE), back = 0;
    int e = name_cmd(c, KDBUS_CMD_NAME_ACQUIRE, name, flags, &back);
    if (!e) { INC(name_acquired); if (back & KDBUS_NAME_IN_QUEUE) INC(name_in_queue); }
    else {
      INC(name_acquire_err);
      if (e != EEXIST && e != EALREADY) UNEXPECTED("NAME_ACQUIRE %s: %s", name, ename(e));
    }
  } else {
    int e = name_cmd(c, KDBUS_CMD_NAME_RELEASE, name, 0, NULL);
    if (!e) INC(name_released);
    else {
      INC(name_release_err);
      if (e != ESRCH && e != EADDRINUSE) UNEXPECTED("NAME_RELEASE %s: %s", name, ename(e));
    }
  }
}

static int match_bloom(struct conn *c, uint64_t cookie, int topic, uint64_t flags) {
  struct { struct kdbus_cmd_match cmd; uint64_t size, type, mask; } __attribute__((aligned(8))) b;
  memset(&b, 0, sizeof(b));
  b.cmd.size = sizeof(b);
  b.cmd.cookie = cookie;
  b.cmd.flags = flags;
  b.size = ITEM_HDR + BLOOM;
  b.type = KDBUS_ITEM_BLOOM_MASK;
  b.mask = 1ULL << topic;
  return ioctl(c->fd, KDBUS_CMD_MATCH_ADD, &b) < 0 ? errno : 0;
}

static void act_match(struct conn *c) {
  uint64_t cookie = 1 + below(4);
  if (chance(50)) {
    int e;
    if (chance(15)) {
      struct { struct kdbus_cmd_match cmd; uint64_t size, type; struct kdbus_notify_id_change id; } __attribute__((aligned(8))) b;
      memset(&b, 0, sizeof(b));
      b.cmd.size = sizeof(b);
      b.cmd.cookie = cookie;
      b.size = ITEM_HDR + sizeof(b.id);
      b.type = chance(50) ? KDBUS_ITEM_ID_ADD : KDBUS_ITEM_ID_REMOVE;
      b.id.id = KDBUS_MATCH_ID_ANY;
      e = ioctl(c->fd, KDBUS_CMD_MATCH_ADD, &b) < 0 ? errno : 0;
    } else {
      e = match_bloom(c, cookie, (int)below(TOPICS), chance(50) ? KDBUS_MATCH_REPLACE : 0);
    }
    if (!e) INC(match_add);
    else { INC(match_add_err); UNEXPECTED("MATCH_ADD: %s", ename(e)); }
  } else {
    struct kdbus_cmd_match m = {.size = sizeof(m), .cookie = cookie};
    if (ioctl(c->fd, KDBUS_CMD_MATCH_REMOVE, &m) == 0) INC(match_remove);
    else {
      INC(match_remove_err);
      if (errno != ENOENT) UNEXPECTED("MATCH_REMOVE: %s", ename(errno));
    }
  }
}

static void act_info(struct conn *c) {
  if (chance(5)) {
    struct kdbus_cmd_name_list l = {.size = sizeof(l), .flags = KDBUS_NAME_LIST_UNIQUE | KDBUS_NAME_LIST_NAMES | KDBUS_NAME_LIST_QUEUED};
    if (ioctl(c->fd, KDBUS_CMD_NAME_LIST, &l) < 0) { INC(list_err); UNEXPECTED("NAME_LIST: %s", ename(errno)); return; }
    INC(list_ok);
    kfree(c, l.offset);
    return;
  }
  uint64_t e = pick(S->dir, nworkers * PER_WORKER, c);
  if (!e) return;
  struct kdbus_cmd_info i = {.size = sizeof(i), .id = (uint32_t)e, .flags = chance(50) ? _KDBUS_ATTACH_ALL : KDBUS_ATTACH_NAMES};
  if (ioctl(c->fd, KDBUS_CMD_CONN_INFO, &i) < 0) {
    INC(info_err);
    if (errno != ENXIO) UNEXPECTED("CONN_INFO %u: %s", (uint32_t)e, ename(errno));
    return;
  }
  INC(info_ok);
  kfree(c, i.offset);
}

// ---- opening and closing ----

static uint64_t lifetime_ns(void) { return (2 + below(18)) * 1000000000ULL; }

static int conn_open(struct conn *c, int slot, int fate) {
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  c->stable = -1;
  c->slot = slot;
  int fd = open(buspath, O_RDWR | O_CLOEXEC);
  if (fd < 0) { INC(open_failed); report("OPEN", "%s: %s", buspath, ename(errno)); return -1; }
  struct kdbus_cmd_hello h;
  memset(&h, 0, sizeof(h));
  h.size = sizeof(h);
  h.flags = KDBUS_HELLO_ACCEPT_FD;
  h.pool_size = POOL;
  h.attach_flags_send = _KDBUS_ATTACH_ANY;
  h.attach_flags_recv = chance(20) ? (KDBUS_ATTACH_CREDS | KDBUS_ATTACH_PIDS | KDBUS_ATTACH_NAMES) : 0;
  if (ioctl(fd, KDBUS_CMD_HELLO, &h) < 0) {
    INC(open_failed);
    report("HELLO", "%s", ename(errno));
    close(fd);
    return -1;
  }
  void *p = mmap(NULL, POOL, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) { INC(open_failed); UNEXPECTED("mmap: %s", ename(errno)); close(fd); return -1; }
  c->fd = fd;
  c->pool = p;
  c->kid = h.id;
  kfree(c, h.offset);
  uint32_t cid = (uint32_t)__atomic_add_fetch(&S->next_cid, 1, __ATOMIC_RELAXED);
  if (cid >= MAX_CIDS) { INC(capped); munmap(p, POOL); close(fd); c->fd = -1; return -1; }
  c->cid = cid;
  c->fate = fate;
  CID[cid].kid = (uint32_t)h.id;
  CID[cid].pid = getpid();
  CID[cid].worker = (uint16_t)worker_index;
  CID[cid].fate = (uint8_t)fate;
  CID[cid].stable = -1;
  __atomic_store_n(&CID[cid].state, CS_ALIVE, __ATOMIC_RELEASE);
  INC(conns_opened);
  char name[32];
  snprintf(name, sizeof(name), "soak.c%u", cid);
  int e = name_cmd(c, KDBUS_CMD_NAME_ACQUIRE, name, 0, NULL);
  if (e) UNEXPECTED("NAME_ACQUIRE %s: %s", name, ename(e));
  else INC(unique_names);
  if (fate == F_STABLE) {
    int s = (int)__atomic_fetch_add(&S->nstable, 1, __ATOMIC_RELAXED);
    if (s >= MAX_STABLE) { INC(capped); }
    else {
      c->stable = s;
      c->topic = s % TOPICS;
      S->stable[s].cid = cid;
      S->stable[s].topic = (uint32_t)c->topic;
      CID[cid].stable = s;
      if ((e = match_bloom(c, 100, c->topic, 0))) UNEXPECTED("MATCH_ADD (stable): %s", ename(e));
    }
    if (role == R_SERVICE) {
      int k = __atomic_fetch_add(&S->nsvc, 1, __ATOMIC_RELAXED);
      snprintf(name, sizeof(name), "soak.svc%d", c->stable);
      if ((e = name_cmd(c, KDBUS_CMD_NAME_ACQUIRE, name, 0, NULL))) UNEXPECTED("NAME_ACQUIRE %s: %s", name, ename(e));
      else INC(unique_names);
      S->svc[k] = (uint32_t)c->kid | (uint64_t)cid << 32;
    }
  } else {
    c->close_at = now_ns() + lifetime_ns();
    if (chance(40) && (e = match_bloom(c, 1, (int)below(TOPICS), 0))) UNEXPECTED("MATCH_ADD: %s", ename(e));
  }
  S->dir[worker_index * PER_WORKER + slot] = (uint32_t)c->kid | (uint64_t)cid << 32;
  return 0;
}

static void unpublish(struct conn *c) { S->dir[worker_index * PER_WORKER + c->slot] = 0; }

static void conn_abrupt(struct conn *c) {
  unpublish(c);
  __atomic_store_n(&CID[c->cid].state, CS_ABRUPT, __ATOMIC_RELEASE);
  munmap(c->pool, POOL);
  close(c->fd);
  c->fd = -1;
  INC(conns_abrupt);
}

/* No more traffic in (matches gone, unpublished), drain, BYEBYE; what was
 * queued was received. Falls back to an abrupt close after many tries. */
static void conn_graceful(struct conn *c) {
  unpublish(c);
  for (uint64_t k = 1; k <= 4; k++) {
    struct kdbus_cmd_match m = {.size = sizeof(m), .cookie = k};
    ioctl(c->fd, KDBUS_CMD_MATCH_REMOVE, &m);
  }
  struct kdbus_cmd_match m = {.size = sizeof(m), .cookie = 100};
  ioctl(c->fd, KDBUS_CMD_MATCH_REMOVE, &m);
  for (int tries = 0; tries < 2000; tries++) {
    drain(c, 1 << 30);
    if (ioctl(c->fd, KDBUS_CMD_BYEBYE, 0) == 0) {
      __atomic_store_n(&CID[c->cid].state, CS_BYE, __ATOMIC_RELEASE);
      munmap(c->pool, POOL);
      close(c->fd);
      c->fd = -1;
      INC(conns_bye);
      return;
    }
    if (errno != EBUSY) { UNEXPECTED("BYEBYE: %s", ename(errno)); break; }
    INC(bye_ebusy);
    if (tries > 10) usleep(1000);
  }
  INC(bye_failed);
  conn_abrupt(c);
}

// ---- the worker ----

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "HANG: a worker loop iteration exceeded the watchdog\n";
  if (write(2, msg, sizeof(msg) - 1)) {}
  INC(hangs);
  _exit(3);
}

static void act(struct conn *c) {
  int churn = c->fate != F_STABLE;
  uint64_t a = below(1000);
  if (a < 380) act_unicast(c, 0);
  else if (a < 460) act_by_name(c);
  else if (a < 560) act_broadcast(c);
  else if (a < 660) act_unicast(c, churn && c->pending_calls < 100);
  else if (a < 740) { if (role != R_SERVICE) act_sync_call(c); else act_unicast(c, 0); }
  else if (a < 860) { if (c->fate != F_ABRUPT) act_name(c); else act_by_name(c); }
  else if (a < 920) { if (churn) act_match(c); else act_info(c); }
  else act_info(c);
}

static int worker(int index, int wrole, uint32_t uid, uint64_t wseed) {
  worker_index = index;
  role = wrole;
  rs = wseed * 0x9e3779b97f4a7c15ULL + (uint64_t)index * 1000003 + (uint64_t)getpid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (uid && (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)) {
    perror("setuid");
    return 2;
  }
  signal(SIGALRM, on_alarm);
  signal(SIGPIPE, SIG_IGN);
  alarm(WATCHDOG);
  /* stable slots stay open for the whole run (one that fails to open stays
   * closed: it would have missed broadcasts); churning slots reopen */
  int stable_slot[PER_WORKER];
  for (int i = 0; i < PER_WORKER; i++) {
    stable_slot[i] = wrole == R_SERVICE || (wrole == R_NORMAL && i < PER_WORKER / 2);
    int fate = stable_slot[i] ? F_STABLE : wrole == R_KILLABLE || chance(50) ? F_ABRUPT : F_GRACEFUL;
    conn_open(&conns[i], i, fate);
    /* one stable connection in every other ordinary worker reads slowly */
    conns[i].lazy = wrole == R_NORMAL && index % 2 == 0 && i == 1;
  }
  uint64_t next = now_ns() + below(rate_per_worker_ns + 1);
  struct pollfd pfd[PER_WORKER];
  int acked = -1;
  for (;;) {
    alarm(WATCHDOG);
    int phase = S->phase, seq = S->phase_seq;
    int n = 0;
    uint64_t t = now_ns();
    for (int i = 0; i < PER_WORKER; i++) {
      int skip = phase == P_RUN && conns[i].lazy && t < conns[i].drain_at;
      pfd[i].fd = skip ? -1 : conns[i].fd;
      pfd[i].events = POLLIN;
      pfd[i].revents = 0;
      if (conns[i].fd >= 0) n++;
    }
    int timeout = phase == P_RUN && next > t ? (int)((next - t) / 1000000) : phase == P_RUN ? 0 : 20;
    if (timeout > 20) timeout = 20;
    if (poll(pfd, PER_WORKER, timeout) < 0 && errno != EINTR) UNEXPECTED("poll: %s", ename(errno));
    int took = 0;
    for (int i = 0; i < PER_WORKER; i++) {
      if (pfd[i].fd < 0 || !(pfd[i].revents & POLLIN)) continue;
      if (conns[i].lazy) {
        took += drain(&conns[i], 1 << 30);
        conns[i].drain_at = now_ns() + LAZY_NS;
      } else {
        took += drain(&conns[i], 64);
      }
    }
    if (phase == P_END) break;
    if (phase == P_DRAIN) {
      /* acknowledged once a pass over every connection found nothing queued */
      for (int i = 0; i < PER_WORKER; i++) if (conns[i].fd >= 0) took += drain(&conns[i], 1 << 30);
      if (!took && acked != seq) S->ack[index] = acked = seq;
      continue;
    }
    if (phase == P_QUIET) {
      if (acked != seq) S->ack[index] = acked = seq;
      continue;
    }
    t = now_ns();
    /* churn: connections past their lifetime close and are replaced */
    for (int i = 0; i < PER_WORKER; i++) {
      struct conn *c = &conns[i];
      if (stable_slot[i] || (c->fd >= 0 && t < c->close_at)) continue;
      if (c->fd >= 0) {
        if (c->fate == F_GRACEFUL) conn_graceful(c);
        else conn_abrupt(c);
      }
      conn_open(c, i, wrole == R_KILLABLE || chance(50) ? F_ABRUPT : F_GRACEFUL);
    }
    if (acked != seq) S->ack[index] = acked = seq;
    if (t < next || !n) continue;
    next = next + rate_per_worker_ns > t ? next + rate_per_worker_ns : t + rate_per_worker_ns;
    struct conn *c = &conns[below(PER_WORKER)];
    if (c->fd >= 0) act(c);
  }
  /* the end: every connection drains and says BYEBYE */
  for (int i = 0; i < PER_WORKER; i++) {
    alarm(WATCHDOG);
    if (conns[i].fd >= 0) conn_graceful(&conns[i]);
  }
  return 0;
}

// ---- the driver ----

static const char *root;
static int nconns, opt_rate = 1000, opt_warmup = 60, opt_sample = 10, opt_kill = 20, server_pid;
static double opt_seconds;
static uint64_t opt_seed = 1;
static pid_t pids[MAX_WORKERS];
static int roles[MAX_WORKERS];
static double t0;
static char fail_reasons[2048];

static double now_s(void) { return now_ns() / 1e9; }

static void failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failed(const char *fmt, ...) {
  size_t n = strlen(fail_reasons);
  va_list ap;
  va_start(ap, fmt);
  if (n) snprintf(fail_reasons + n, sizeof(fail_reasons) - n, "; ");
  n = strlen(fail_reasons);
  vsnprintf(fail_reasons + n, sizeof(fail_reasons) - n, fmt, ap);
  va_end(ap);
}

static void spawn(int w) {
  fflush(stdout);
  pid_t p = fork();
  if (p < 0) { perror("fork"); exit(2); }
  if (p == 0) _exit(worker(w, roles[w], uids[w], opt_seed));
  pids[w] = p;
}

/* The connections of a dead worker are gone, and so is what was queued for them. */
static void bury(int w, pid_t pid) {
  for (int i = 0; i < PER_WORKER; i++) S->dir[w * PER_WORKER + i] = 0;
  uint64_t n = S->next_cid;
  for (uint64_t c = 1; c <= n && c < MAX_CIDS; c++)
    if (CID[c].pid == pid && CID[c].state == CS_ALIVE) { CID[c].state = CS_KILLED; INC(conns_killed); }
}

/* Reaps dead workers (waiting for `wait_for` if given); a death the driver did
 * not cause, or a worker exit other than 0, is counted. Returns the workers reaped. */
static int reap(pid_t wait_for) {
  int st, n = 0;
  pid_t p;
  while ((p = waitpid(-1, &st, wait_for ? 0 : WNOHANG)) > 0) {
    int w = -1;
    for (int i = 0; i < nworkers; i++) if (pids[i] == p) w = i;
    if (w < 0) continue;
    pids[w] = 0;
    n++;
    bury(w, p);
    if (p == wait_for) return n;
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
      INC(worker_deaths);
      fprintf(stderr, "DEATH worker %d (pid %d): %s %d\n", w, p, WIFSIGNALED(st) ? "signal" : "exit",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
  }
  return n;
}

struct usage { long rss, anon, file, pools, fds, channels; };

/* The server's VmRSS, the Rss of its pool mappings (the clients' memory, as
 * bench/run.sh counts it), its RssAnon and RssFile (pages of the node binary
 * and libraries, which grow as more of their code runs) and its open fds.
 * The fd channels (native/fdchannel.h) are counted apart: one per live
 * process that received fds, each a pidfd and two sockets, and one epoll
 * watching their pidfds while any is open; workers come and go, so their
 * number does. fds is every other fd. */
static struct usage usage(void) {
  struct usage u = {0, 0, 0, 0, 0, 0};
  if (!server_pid) return u;
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%d/status", server_pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f)) {
    sscanf(line, "VmRSS: %ld kB", &u.rss);
    sscanf(line, "RssAnon: %ld kB", &u.anon);
    sscanf(line, "RssFile: %ld kB", &u.file);
  }
  if (f) fclose(f);
  snprintf(path, sizeof(path), "/proc/%d/smaps", server_pid);
  f = fopen(path, "r");
  int pool = 0;
  while (f && fgets(line, sizeof(line), f)) {
    unsigned long a, b;
    long kb;
    char name[256] = "";
    if (line[0] != 'R' && sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &a, &b, name) >= 2) pool = !strncmp(name, "/memfd:kdbusfs-pool", 19);
    else if (pool && sscanf(line, "Rss: %ld kB", &kb) == 1) u.pools += kb;
  }
  if (f) fclose(f);
  snprintf(path, sizeof(path), "/proc/%d/fd", server_pid);
  DIR *d = opendir(path);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    u.fds++;
    char target[64];
    ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
    if (n > 0 && (target[n] = 0, !strcmp(target, "anon_inode:[pidfd]"))) u.channels++;
  }
  if (d) closedir(d);
  if (u.channels) u.fds -= 3 * u.channels + 1;
  return u;
}

static long live_conns(void) {
  return (long)(GET(conns_opened) - GET(conns_bye) - GET(conns_abrupt) - GET(conns_killed));
}

static void print_usage(const char *what, const char *label) {
  struct usage u = usage();
  printf("%s%s%s t=%.0f conns=%ld rss_kb=%ld pools_kb=%ld net_kb=%ld anon_kb=%ld file_kb=%ld fds=%ld channels=%ld msgs=%" PRIu64
         " bcasts=%" PRIu64 "\n",
         what, label ? " label=" : "", label ? label : "", now_s() - t0, live_conns(), u.rss, u.pools, u.rss - u.pools,
         u.anon, u.file, u.fds, u.channels, S->next_mid, S->next_bmid);
  fflush(stdout);
}

static void set_phase(int phase) {
  S->phase = phase;
  __atomic_add_fetch(&S->phase_seq, 1, __ATOMIC_SEQ_CST);
}

/* Waits until every live worker acknowledged the current phase. */
static int wait_acks(const char *what) {
  int seq = S->phase_seq;
  for (double end = now_s() + 180; now_s() < end; usleep(20000)) {
    reap(0);
    int all = 1;
    for (int w = 0; w < nworkers; w++) if (pids[w] && S->ack[w] != seq) all = 0;
    if (all) return 1;
  }
  for (int w = 0; w < nworkers; w++) if (pids[w] && S->ack[w] != seq) fprintf(stderr, "STUCK worker %d in %s\n", w, what);
  INC(hangs);
  return 0;
}

/* Pause: no new traffic, synchronous calls finish, every queue drained. */
static void quiesce(const char *label) {
  set_phase(P_QUIET);
  wait_acks("quiet");
  set_phase(P_DRAIN);
  wait_acks("drain");
  usleep(300000);
  print_usage("quiesce", label);
}

static int wait_ready(void) {
  for (double end = now_s() + 120; now_s() < end; usleep(20000)) {
    int all = 1;
    for (int w = 0; w < nworkers; w++) if (S->ack[w] != S->phase_seq) all = 0;
    if (all) return 1;
  }
  return 0;
}

static int make_bus(char *bus, size_t len) {
  char path[512];
  snprintf(path, sizeof(path), "%s/control", root);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) { fprintf(stderr, "open %s: %s\n", path, ename(errno)); exit(2); }
  struct {
    struct kdbus_cmd_make head;
    struct { uint64_t size, type; struct kdbus_bloom_parameter p; } bloom;
    struct { uint64_t size, type; char str[48]; } name;
  } __attribute__((aligned(8))) m;
  memset(&m, 0, sizeof(m));
  m.bloom.size = sizeof(m.bloom);
  m.bloom.type = KDBUS_ITEM_BLOOM_PARAMETER;
  m.bloom.p.size = BLOOM;
  m.bloom.p.n_hash = 1;
  snprintf(m.name.str, sizeof(m.name.str), "0-soak-%d", getpid());
  m.name.type = KDBUS_ITEM_MAKE_NAME;
  m.name.size = ITEM_HDR + strlen(m.name.str) + 1;
  m.head.flags = KDBUS_MAKE_ACCESS_WORLD;
  m.head.size = sizeof(m.head) + sizeof(m.bloom) + ALIGN8(m.name.size);
  if (ioctl(fd, KDBUS_CMD_BUS_MAKE, &m) < 0) { fprintf(stderr, "BUS_MAKE: %s\n", ename(errno)); exit(2); }
  snprintf(bus, len, "%s/%s/bus", root, m.name.str);
  return fd;
}

/* A policy holder: the world may own (so talk to, and see) soak.* names. */
static int policy_holder(void) {
  int fd = open(buspath, O_RDWR | O_CLOEXEC);
  if (fd < 0) { fprintf(stderr, "open %s: %s\n", buspath, ename(errno)); exit(2); }
  struct {
    struct kdbus_cmd_hello h;
    struct { uint64_t size, type; char str[8]; } name;
    struct { uint64_t size, type; struct kdbus_policy_access a; } access;
  } __attribute__((aligned(8))) b;
  memset(&b, 0, sizeof(b));
  b.h.size = sizeof(b);
  b.h.flags = KDBUS_HELLO_POLICY_HOLDER;
  b.h.pool_size = POOL;
  b.name.type = KDBUS_ITEM_NAME;
  strcpy(b.name.str, "soak.*");
  b.name.size = ITEM_HDR + strlen(b.name.str) + 1;
  b.access.type = KDBUS_ITEM_POLICY_ACCESS;
  b.access.size = sizeof(b.access);
  b.access.a.type = KDBUS_POLICY_ACCESS_WORLD;
  b.access.a.access = KDBUS_POLICY_OWN;
  if (ioctl(fd, KDBUS_CMD_HELLO, &b) < 0) { fprintf(stderr, "policy holder HELLO: %s\n", ename(errno)); exit(2); }
  return fd;
}

static void print_counters(void) {
  printf("result");
  for (int i = 0; i < NCTR; i++) printf(" %s=%" PRIu64, ctrname[i], S->ctr[i]);
  printf("\nresult send_errors");
  for (int e = 0; e < 140; e++) if (S->send_errno[e]) printf(" %s=%" PRIu64, ename(e), S->send_errno[e]);
  printf("\n");
}

/* The ledger: every queued message received exactly once, unless its
 * receiver was closed abruptly or killed; every broadcast at each stable
 * subscriber of its topic exactly once, or among the drops it was told of. */
static void check_ledger(void) {
  uint64_t nm = S->next_mid < MAX_MSGS ? S->next_mid : MAX_MSGS - 1;
  uint64_t queued = 0, received = 0, lost = 0, discarded = 0, phantom = 0, inflight = 0, maybe = 0, maybe_recv = 0,
           calls = 0, unresolved = 0, replied = 0, timed_out = 0, dead = 0, dead_twice = 0, outcome_bad = 0;
  int shown = 0;
  for (uint64_t i = 1; i <= nm; i++) {
    struct msgrec r = M[i];
    if (r.kind == K_ACALL && r.status == ST_QUEUED) {
      /* one outcome per call; two REPLY_DEADs only for a request still
       * unread when its receiver went: kdbus_conn_disconnect reports it from
       * the dying queue and again from the waiter's reply list */
      unsigned o = r.outcome, rep = o & 3, tmo = (o >> 2) & 3, dd = (o >> 4) & 3;
      calls++;
      if (!o) unresolved++;
      else if (rep + tmo + (dd > 0) > 1 || dd > 2 || (dd == 2 && r.recv)) {
        outcome_bad++;
        if (shown++ < 10) fprintf(stderr, "OUTCOME call %" PRIu64 ": %u replies, %u timeouts, %u deads (request received %u)\n", i, rep, tmo, dd, r.recv);
      } else {
        replied += rep;
        timed_out += tmo;
        dead += dd > 0;
        dead_twice += dd == 2;
      }
    }
    switch (r.status) {
    case ST_QUEUED:
      queued++;
      if (r.recv) { received++; break; }
      if (r.dst_cid && (CID[r.dst_cid].state == CS_ABRUPT || CID[r.dst_cid].state == CS_KILLED)) { discarded++; break; }
      lost++;
      if (shown++ < 10)
        fprintf(stderr, "LOST mid %" PRIu64 " kind %u to cid %u (kid %u, state %u, fate %u, worker %u)\n", i, r.kind,
                r.dst_cid, CID[r.dst_cid].kid, CID[r.dst_cid].state, CID[r.dst_cid].fate, CID[r.dst_cid].worker);
      break;
    case ST_REFUSED:
      if (r.recv) { phantom++; if (shown++ < 10) fprintf(stderr, "PHANTOM mid %" PRIu64 " kind %u received, but its SEND failed\n", i, r.kind); }
      break;
    case ST_MAYBE: maybe++; if (r.recv) maybe_recv++; break;
    case ST_ATTEMPT: inflight++; break;
    }
  }
  printf("result messages: queued=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " duplicated=%" PRIu64
         " discarded_with_closed_receiver=%" PRIu64 " phantom=%" PRIu64 " corrupt=%" PRIu64 " misdelivered=%" PRIu64
         " reordered=%" PRIu64 " misattributed=%" PRIu64 " (of %" PRIu64 " with metadata) in_flight_at_kill=%" PRIu64
         " sync_failed_after_queue=%" PRIu64 " (received %" PRIu64 ")\n",
         queued, received, lost, GET(dup), discarded, phantom, GET(corrupt), GET(misdelivered), GET(reordered),
         GET(misattributed), GET(metadata_checked), inflight, maybe, maybe_recv);
  if (lost) failed("%" PRIu64 " messages lost", lost);
  if (GET(dup)) failed("%" PRIu64 " messages duplicated", GET(dup));
  if (phantom) failed("%" PRIu64 " phantom messages", phantom);
  if (GET(corrupt) || GET(misdelivered) || GET(reordered) || GET(foreign) || GET(misattributed))
    failed("corrupt %" PRIu64 " misdelivered %" PRIu64 " reordered %" PRIu64 " foreign %" PRIu64 " misattributed %" PRIu64,
           GET(corrupt), GET(misdelivered), GET(reordered), GET(foreign), GET(misattributed));
  if (inflight > GET(workers_killed)) failed("%" PRIu64 " sends never finished, more than the %" PRIu64 " kills", inflight, GET(workers_killed));

  /* broadcasts */
  uint64_t nb = S->next_bmid < MAX_BCAST ? S->next_bmid : MAX_BCAST - 1, bq = 0, battempt = 0;
  for (uint64_t i = 1; i <= nb; i++) { if (B[i].status == ST_QUEUED) bq++; else if (B[i].status == ST_ATTEMPT) battempt++; }
  uint64_t expected = 0, got = 0, dropped = 0, blost = 0, over = 0, bphantom = 0, unmatched = 0;
  uint64_t ns = S->nstable < MAX_STABLE ? S->nstable : MAX_STABLE;
  for (uint64_t s = 0; s < ns; s++) {
    struct stablerec *st = &S->stable[s];
    const uint8_t *bits = BITS + s * (MAX_BCAST / 8);
    uint64_t exp = 0, have = 0;
    for (uint64_t i = 1; i <= nb; i++) {
      int bit = (bits[i >> 3] >> (i & 7)) & 1;
      if (bit && B[i].topic != st->topic) unmatched++;
      if (bit && B[i].status == ST_REFUSED) bphantom++;
      if (B[i].status != ST_QUEUED || B[i].topic != st->topic || B[i].src_cid == st->cid) continue;
      exp++;
      have += bit;
    }
    expected += exp;
    got += have;
    dropped += st->dropped;
    if (exp - have > st->dropped) {
      blost += exp - have - st->dropped;
      fprintf(stderr, "BCAST LOST at stable %" PRIu64 " (cid %u, topic %u): expected %" PRIu64 ", received %" PRIu64 ", told dropped %" PRIu64 "\n",
              s, st->cid, st->topic, exp, have, st->dropped);
    } else {
      over += st->dropped - (exp - have);
    }
  }
  printf("result broadcasts: sent=%" PRIu64 " refused=%" PRIu64 " stable_subscribers=%" PRIu64 " deliveries_expected=%" PRIu64
         " delivered=%" PRIu64 " dropped_reported=%" PRIu64 " lost=%" PRIu64 " duplicated=%" PRIu64 " drops_overreported=%" PRIu64
         " phantom=%" PRIu64 " unmatched=%" PRIu64 " to_churning=%" PRIu64 " in_flight_at_kill=%" PRIu64 "\n",
         bq, GET(bcast_refused), ns, expected, got, dropped, blost, GET(bcast_dup), over, bphantom, unmatched, GET(bcast_recv_churn), battempt);
  if (blost) failed("%" PRIu64 " broadcast deliveries lost", blost);
  if (GET(bcast_dup)) failed("%" PRIu64 " broadcasts duplicated", GET(bcast_dup));
  if (over > battempt) failed("%" PRIu64 " drops reported that did not happen", over);
  if (bphantom || unmatched) failed("broadcasts: %" PRIu64 " phantom, %" PRIu64 " without a match", bphantom, unmatched);

  printf("result calls: sync=%" PRIu64 " sync_replied=%" PRIu64 " sync_failed_after_queue=%" PRIu64 " sync_refused=%" PRIu64
         " async=%" PRIu64 " async_replied=%" PRIu64 " async_timed_out=%" PRIu64 " async_dead=%" PRIu64
         " (unread, reported twice=%" PRIu64 ") unresolved_at_close=%" PRIu64 " bad_outcomes=%" PRIu64 "\n",
         GET(scall_ok) + GET(scall_maybe) + GET(scall_refused), GET(scall_ok), GET(scall_maybe), GET(scall_refused),
         calls, replied, timed_out, dead, dead_twice, unresolved, outcome_bad);
  if (outcome_bad) failed("%" PRIu64 " calls with more than one outcome", outcome_bad);
  if (GET(scall_ok) != GET(recv_sync_reply)) failed("%" PRIu64 " synchronous calls returned 0 but %" PRIu64 " replies were taken", GET(scall_ok), GET(recv_sync_reply));
  printf("result names: unique=%" PRIu64 " acquired=%" PRIu64 " in_queue=%" PRIu64 " acquire_refused=%" PRIu64 " released=%" PRIu64
         " release_refused=%" PRIu64 " matches_added=%" PRIu64 " matches_removed=%" PRIu64 "\n",
         GET(unique_names), GET(name_acquired), GET(name_in_queue), GET(name_acquire_err), GET(name_released), GET(name_release_err),
         GET(match_add), GET(match_remove));
  printf("result conns: opened=%" PRIu64 " closed_byebye=%" PRIu64 " closed_abruptly=%" PRIu64 " killed_with_worker=%" PRIu64
         " workers_killed=%" PRIu64 " byebye_ebusy=%" PRIu64 " byebye_gave_up=%" PRIu64 " open_failed=%" PRIu64 "\n",
         GET(conns_opened), GET(conns_bye), GET(conns_abrupt), GET(conns_killed), GET(workers_killed), GET(bye_ebusy), GET(bye_failed), GET(open_failed));
  printf("result payloads: memfds_sent=%" PRIu64 " memfds_received=%" PRIu64 " fds_sent=%" PRIu64 " fds_received=%" PRIu64 " fds_missing=%" PRIu64 "\n",
         GET(memfd_sent), GET(memfd_recv), GET(fds_sent), GET(fds_recv), GET(fds_missing));
  if (GET(unexpected)) failed("%" PRIu64 " unexpected errors", GET(unexpected));
  if (GET(hangs)) failed("%" PRIu64 " hangs", GET(hangs));
  if (GET(worker_deaths)) failed("%" PRIu64 " workers died", GET(worker_deaths));
  if (GET(open_failed)) failed("%" PRIu64 " connections failed to open", GET(open_failed));
  if (GET(capped)) failed("the ledger was full %" PRIu64 " times", GET(capped));
  if (GET(fds_missing)) failed("%" PRIu64 " fds not installed", GET(fds_missing));
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: soak-client DIR SECONDS CONNS [--rate N] [--warmup S] [--sample S] [--kill-every S] [--server-pid PID] [--seed N]\n");
    return 2;
  }
  root = argv[1];
  opt_seconds = atof(argv[2]);
  nconns = atoi(argv[3]);
  for (int i = 4; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--rate")) opt_rate = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup")) opt_warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--sample")) opt_sample = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--kill-every")) opt_kill = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--server-pid")) server_pid = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed")) opt_seed = strtoull(argv[i + 1], NULL, 0);
    else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
  }
  nworkers = (nconns + PER_WORKER - 1) / PER_WORKER;
  if (nworkers < 5 || nworkers > MAX_WORKERS || opt_rate < 1) { fprintf(stderr, "CONNS must be 40..%d\n", MAX_WORKERS * PER_WORKER); return 2; }
  rate_per_worker_ns = (uint64_t)(1e9 * nworkers / opt_rate);
  signal(SIGPIPE, SIG_IGN);
  S = shared_map(sizeof(*S));
  M = shared_map(sizeof(*M) * (size_t)MAX_MSGS);
  B = shared_map(sizeof(*B) * (size_t)MAX_BCAST);
  CID = shared_map(sizeof(*CID) * (size_t)MAX_CIDS);
  BITS = shared_map((size_t)MAX_STABLE * (MAX_BCAST / 8));
  rs ^= opt_seed * 0x2545f4914f6cdd1dULL;

  char bus[512];
  int control = make_bus(bus, sizeof(bus));
  snprintf(buspath, sizeof(buspath), "%s", bus);
  int holder = policy_holder();
  static const uint32_t uid_cycle[3] = {0, 65534, 65533};
  for (int w = 0; w < nworkers; w++) {
    roles[w] = w < 2 ? R_SERVICE : w < 4 ? R_KILLABLE : R_NORMAL;
    uids[w] = uid_cycle[w % 3];
  }
  printf("soak bus=%s conns=%d workers=%d per_worker=%d uids=0,65534,65533 seconds=%.0f warmup=%d rate=%d kill_every=%d seed=%" PRIu64 "\n",
         bus, nworkers * PER_WORKER, nworkers, PER_WORKER, opt_seconds, opt_warmup, opt_rate, opt_kill, opt_seed);
  /* connect everything first (quiet), then traffic: stable subscribers miss nothing */
  S->phase = P_QUIET;
  S->phase_seq = 1;
  t0 = now_s();
  for (int w = 0; w < nworkers; w++) spawn(w);
  if (!wait_ready()) { fprintf(stderr, "workers did not come up\n"); INC(hangs); }
  print_usage("sample", "start");
  t0 = now_s();
  set_phase(P_RUN);
  double next_sample = opt_sample, next_kill = opt_kill, warm = opt_warmup < opt_seconds ? opt_warmup : -1;
  int killable = 2;
  for (;;) {
    usleep(50000);
    reap(0);
    double t = now_s() - t0;
    if (t >= opt_seconds) break;
    if (warm > 0 && t >= warm) {
      quiesce("warmup");
      warm = -1;
      set_phase(P_RUN);
      continue;
    }
    if (opt_kill > 0 && t >= next_kill) {
      next_kill += opt_kill;
      int w = killable;
      killable = killable == 2 ? 3 : 2;
      if (pids[w]) {
        kill(pids[w], SIGKILL);
        reap(pids[w]);
        INC(workers_killed);
        spawn(w);
      }
    }
    if (opt_sample > 0 && t >= next_sample) {
      next_sample += opt_sample;
      print_usage("sample", NULL);
    }
  }
  quiesce("end");
  set_phase(P_END);
  for (double end = now_s() + 180;;) {
    reap(0);
    int any = 0;
    for (int w = 0; w < nworkers; w++) if (pids[w]) any = 1;
    if (!any) break;
    if (now_s() > end) {
      for (int w = 0; w < nworkers; w++) if (pids[w]) { fprintf(stderr, "STUCK worker %d at the end\n", w); kill(pids[w], SIGKILL); }
      INC(hangs);
      end = now_s() + 10;
    }
    usleep(20000);
  }
  close(holder);
  close(control);
  print_counters();
  check_ledger();
  if (fail_reasons[0]) printf("verdict FAIL: %s\n", fail_reasons);
  else printf("verdict ok\n");
  return fail_reasons[0] ? 1 : 0;
}
