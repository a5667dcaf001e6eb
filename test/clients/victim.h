// The victim of the hostile-user tests (issue #17) and the callers of the
// flood test: a kdbus connection making synchronous 8-byte calls (each
// carrying its cookie, the reply checked against it) at a steady rate, and
// a receiver answering them. One copy for test/clients/hostile-memory.c,
// hostile-resources.c and flood-client.c. Include after client.h.
#ifndef KDBUSFS_TEST_VICTIM_H
#define KDBUSFS_TEST_VICTIM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"

struct conn {
  int fd;
  uint64_t id;
  uint8_t *pool;
  uint64_t pool_size;
  uint64_t cookie;  // the last call's
};

#define CONN_INIT { -1, 0, NULL, 0, 0 }

static inline int conn_free(const struct conn *c, uint64_t off) {
  struct kdbus_cmd_free f = { .size = sizeof(f), .offset = off };
  return ioctl(c->fd, KDBUS_CMD_FREE, &f) < 0 ? errno : 0;
}

// Opens path, HELLO (ACCEPT_FD, every attach flag sent) with a pool of
// pool_size, mmap: 0 or an errno.
static inline int conn_open(struct conn *c, const char *path, uint64_t pool_size) {
  c->fd = open(path, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) return errno;
  struct kdbus_cmd_hello h;
  memset(&h, 0, sizeof(h));
  h.size = sizeof(h);
  h.flags = KDBUS_HELLO_ACCEPT_FD;
  h.attach_flags_send = _KDBUS_ATTACH_ANY;
  h.pool_size = pool_size;
  if (ioctl(c->fd, KDBUS_CMD_HELLO, &h) < 0) {
    int e = errno;
    close(c->fd);
    c->fd = -1;
    return e;
  }
  c->pool = mmap(NULL, pool_size, PROT_READ, MAP_SHARED, c->fd, 0);
  if (c->pool == MAP_FAILED) return errno;
  c->id = h.id;
  c->pool_size = pool_size;
  conn_free(c, h.offset);
  return 0;
}

// Room for a message of one 8-byte vector (struct kdbus_item is larger than that item).
#define MSG_WORDS ((sizeof(struct kdbus_msg) + sizeof(struct kdbus_item)) / 8 + 1)

// A message of one 8-byte vector at vec_addr, built in buf (MSG_WORDS at
// least); a request (EXPECT_REPLY) times out after timeout_ms, anything
// else answers reply_to.
static inline struct kdbus_msg *build_msg(uint64_t *buf, uint64_t dst, uint64_t cookie, uint64_t flags,
                                          uint64_t reply_to, uint64_t vec_addr, int timeout_ms) {
  struct kdbus_msg *m = (struct kdbus_msg *)buf;
  memset(m, 0, sizeof(*m) + sizeof(struct kdbus_item));
  m->size = sizeof(struct kdbus_msg) + ALIGN8(ITEM_HDR + sizeof(struct kdbus_vec));
  m->flags = flags;
  m->dst_id = dst;
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->cookie = cookie;
  if (flags & KDBUS_MSG_EXPECT_REPLY)
    m->timeout_ns = (uint64_t)now_ns() + (uint64_t)timeout_ms * 1000000ULL;
  else
    m->cookie_reply = reply_to;
  struct kdbus_item *it = m->items;
  it->size = ITEM_HDR + sizeof(struct kdbus_vec);
  it->type = KDBUS_ITEM_PAYLOAD_VEC;
  it->vec.size = 8;
  it->vec.address = vec_addr;
  return m;
}

// One message to dst whose 8-byte payload is its cookie; sync: a call
// waiting for its reply (timeout_ms), whose cookie_reply must be the
// cookie. 0 or an errno.
static inline int send_cookie(const struct conn *c, uint64_t dst, uint64_t cookie, uint64_t flags, uint64_t reply_to,
                              int sync, int timeout_ms) {
  uint64_t payload = cookie, buf[MSG_WORDS];
  struct kdbus_msg *m = build_msg(buf, dst, cookie, flags, reply_to, (uintptr_t)&payload, timeout_ms);
  struct kdbus_cmd_send cmd;
  memset(&cmd, 0, sizeof(cmd));
  cmd.size = sizeof(cmd);
  cmd.flags = sync ? KDBUS_SEND_SYNC_REPLY : 0;
  cmd.msg_address = (uintptr_t)m;
  if (ioctl(c->fd, KDBUS_CMD_SEND, &cmd) < 0) return errno;
  if (!sync) return 0;
  const struct kdbus_msg *r = (const void *)(c->pool + cmd.reply.offset);
  int bad = cmd.reply.offset >= c->pool_size || r->cookie_reply != cookie;
  conn_free(c, cmd.reply.offset);
  return bad ? EBADMSG : 0;
}

// Answers a received message if it is a call (its cookie back).
static inline void answer_call(const struct conn *c, const struct kdbus_msg *m) {
  if (m->src_id != 0 && (m->flags & KDBUS_MSG_EXPECT_REPLY)) send_cookie(c, m->src_id, m->cookie, 0, m->cookie, 0, 0);
}

// Receives and answers every call on c, forever (a thread's body).
static inline void *serve_calls(void *arg) {
  const struct conn *c = arg;
  for (;;) {
    struct pollfd p = { c->fd, POLLIN, 0 };
    if (poll(&p, 1, -1) < 0) continue;
    for (;;) {
      struct kdbus_cmd_recv r;
      memset(&r, 0, sizeof(r));
      r.size = sizeof(r);
      if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) break;
      struct kdbus_msg m = *(const struct kdbus_msg *)(c->pool + r.msg.offset);
      conn_free(c, r.msg.offset);
      answer_call(c, &m);
    }
  }
  return NULL;
}

static inline int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

// n synchronous calls from c to dst, one every 1/rate s (rate 0: one after
// the other), timeout_ms each, cookies counting on from c's last call.
// Answers done=N failed=N err=ENAME (the first failure) p50_ms= p99_ms=
// max_ms= total_ms= (latencies).
static inline void victim_calls(struct conn *c, uint64_t dst, long n, double rate, int timeout_ms) {
  if (n <= 0) return answer("err EINVAL calls");
  int64_t *lat = calloc((size_t)n, sizeof(*lat));
  long failed = 0;
  int first_err = 0;
  int64_t period = rate > 0 ? (int64_t)(1e9 / rate) : 0, start = now_ns();
  for (long k = 0; k < n; k++) {
    if (period) {
      int64_t at = start + k * period;
      struct timespec ts = { (time_t)(at / 1000000000), (long)(at % 1000000000) };
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
    }
    int64_t a = now_ns();
    int e = send_cookie(c, dst, ++c->cookie, KDBUS_MSG_EXPECT_REPLY, 0, 1, timeout_ms);
    lat[k] = now_ns() - a;
    if (e) {
      failed++;
      if (!first_err) first_err = e;
    }
  }
  int64_t total = now_ns() - start;
  qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
  answer("ok done=%ld failed=%ld err=%s p50_ms=%.2f p99_ms=%.2f max_ms=%.2f total_ms=%.1f", n - failed, failed,
         first_err ? ename(first_err) : "-", (double)lat[n / 2] / 1e6, (double)lat[(n * 99) / 100] / 1e6,
         (double)lat[n - 1] / 1e6, (double)total / 1e6);
  free(lat);
}

// A message from c to dst: one vector of size bytes at data, then nfds
// copies of fd in an FDS item (none when nfds is 0). 0 or an errno.
static inline int send_fds(const struct conn *c, uint64_t dst, const void *data, uint64_t size, int fd, int nfds) {
  size_t len = sizeof(struct kdbus_msg) + ALIGN8(ITEM_HDR + sizeof(struct kdbus_vec)) +
               ALIGN8(ITEM_HDR + (size_t)nfds * sizeof(int));
  uint64_t *buf = calloc(1, len + sizeof(struct kdbus_item));
  struct kdbus_msg *m = build_msg(buf, dst, 1, 0, 0, (uintptr_t)data, 0);
  m->items[0].vec.size = size;
  if (nfds) {
    struct kdbus_item *it = ITEM_NEXT(m->items);
    it->size = ITEM_HDR + (size_t)nfds * sizeof(int);
    it->type = KDBUS_ITEM_FDS;
    for (int i = 0; i < nfds; i++) it->fds[i] = fd;
    m->size += ALIGN8(it->size);
  }
  struct kdbus_cmd_send cmd = { .size = sizeof(cmd), .msg_address = (uintptr_t)m };
  int e = ioctl(c->fd, KDBUS_CMD_SEND, &cmd) < 0 ? errno : 0;
  free(buf);
  return e;
}

// The message a RECV put at off in c's pool: its fds handed to done (close
// for a receiver that keeps none), the slice FREEd; returns the fd count.
static inline int take_fds(const struct conn *c, uint64_t off, int (*done)(int)) {
  const struct kdbus_msg *msg = (const void *)(c->pool + off);
  int got = 0;
  for (const struct kdbus_item *it = msg->items; (const uint8_t *)it < (const uint8_t *)msg + msg->size;
       it = ITEM_NEXT(it)) {
    if (it->type != KDBUS_ITEM_FDS) continue;
    for (size_t i = 0; i < (it->size - ITEM_HDR) / sizeof(int); i++, got++)
      if (it->fds[i] >= 0) done(it->fds[i]);
  }
  conn_free(c, off);
  return got;
}

#endif
