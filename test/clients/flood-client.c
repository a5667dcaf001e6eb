// flood-client: one kdbus connection per process for test/flood.test.ts,
// driven like kdbus-peer (test/harness.ts Peer): it prints one line when it
// is ready, then reads one command per line on stdin and answers each with
// one line, "ok key=value ..." or "err ENAME ...". Written against
// the kdbus ABI only (include/kdbus-abi.h).
//
// Every message it sends carries one 8-byte vector holding its cookie, so a
// receiver can check each message it gets and count, per sender, what
// arrived once, twice (duplicates) or out of order.
//
// Commands:
//   setuid UID                 drop to UID (gid UID too), before hello
//   hello BUS                  open BUS, HELLO (ACCEPT_FD, 8 MiB pool), mmap
//   acquire NAME               NAME_ACQUIRE
//   serve                      start receiving in a thread: every message is
//                              counted under its sender and FREEd; a request
//                              (EXPECT_REPLY) is answered at once
//   stats                      stop serving, receive what is still queued, and
//                              answer msgs=N bad=N (payload not its cookie)
//                              lost=N (dropped_msgs of EOVERFLOW) and
//                              srcs=ID:COUNT:DUPS:DISORDER:MAXCOOKIE,...
//   flood DST                  start sending to DST in a thread as fast as it
//                              goes, cookies 1, 2, 3... (a refused send is
//                              retried with the same cookie, so the receiver
//                              must see exactly 1..sent)
//   stop                       stop flooding; answer sent=N enobufs=N other=N
//                              (refusals by errno) other_err=ENAME
//   calls DST N MS             N synchronous calls (SEND_SYNC_REPLY, timeout
//                              MS each), one after the other, their cookies
//                              counting on from the last calls' (1 first):
//                              test/clients/victim.h
//   exit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"
#include "victim.h"

#define POOL_SIZE (8u << 20)
#define MAX_SRCS 64

static struct conn conn = CONN_INIT;

// ---- serving ----

struct src {
  uint64_t id, count, dups, disorder, max;
  uint8_t *seen;  // one bit per cookie
  size_t seen_bytes;
};

static struct src srcs[MAX_SRCS];
static int nsrcs;
static uint64_t msgs, bad, lost;
static atomic_int serving;
static pthread_t serve_thread;

static struct src *src_of(uint64_t id) {
  for (int i = 0; i < nsrcs; i++)
    if (srcs[i].id == id) return &srcs[i];
  if (nsrcs == MAX_SRCS) return NULL;
  struct src *s = &srcs[nsrcs++];
  memset(s, 0, sizeof(*s));
  s->id = id;
  return s;
}

static void count(uint64_t src_id, uint64_t cookie) {
  struct src *s = src_of(src_id);
  if (!s) return;
  size_t byte = cookie / 8;
  if (byte >= s->seen_bytes) {
    size_t n = s->seen_bytes ? s->seen_bytes : 4096;
    while (n <= byte) n *= 2;
    s->seen = realloc(s->seen, n);
    memset(s->seen + s->seen_bytes, 0, n - s->seen_bytes);
    s->seen_bytes = n;
  }
  uint8_t bit = (uint8_t)(1u << (cookie % 8));
  if (s->seen[byte] & bit) s->dups++;
  s->seen[byte] |= bit;
  if (cookie < s->max) s->disorder++;
  else s->max = cookie;
  s->count++;
}

// Receives what is queued now; 0, or an errno other than EAGAIN.
static int receive_queued(void) {
  for (;;) {
    struct kdbus_cmd_recv r;
    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    if (ioctl(conn.fd, KDBUS_CMD_RECV, &r) < 0) {
      if (errno == EAGAIN) return 0;
      if (errno == EOVERFLOW) {
        lost += r.dropped_msgs;
        continue;
      }
      return errno;
    }
    const struct kdbus_msg *m = (const void *)(conn.pool + r.msg.offset);
    uint64_t src = m->src_id, cookie = m->cookie;
    int ok = 0;
    const uint8_t *end = (const uint8_t *)m + m->size;
    for (const struct kdbus_item *it = m->items; (const uint8_t *)it + ITEM_HDR <= end; it = ITEM_NEXT(it)) {
      if (it->size < ITEM_HDR) break;
      if (it->type == KDBUS_ITEM_PAYLOAD_OFF && it->vec.size == 8 && it->vec.offset + 8 <= conn.pool_size) {
        uint64_t v;
        memcpy(&v, conn.pool + it->vec.offset, 8);
        ok = v == cookie;
      }
    }
    struct kdbus_msg head = *m;
    conn_free(&conn, r.msg.offset);
    if (src == 0) continue;  // a kernel notification
    msgs++;
    if (!ok) bad++;
    count(src, cookie);
    answer_call(&conn, &head);
  }
}

static void *serve_main(void *arg) {
  (void)arg;
  while (serving) {
    struct pollfd p = { conn.fd, POLLIN, 0 };
    if (poll(&p, 1, 50) > 0 && receive_queued()) break;
  }
  return NULL;
}

// ---- flooding ----

static atomic_int flooding;
static pthread_t flood_thread;
static uint64_t flood_dst, flood_sent, flood_enobufs, flood_other;
static int flood_other_err;

static void *flood_main(void *arg) {
  (void)arg;
  uint64_t cookie = 1;
  while (flooding) {
    int e = send_cookie(&conn, flood_dst, cookie, 0, 0, 0, 0);
    if (!e) {
      flood_sent++;
      cookie++;
    } else if (e == ENOBUFS) {
      flood_enobufs++;
    } else {
      flood_other++;
      flood_other_err = e;
    }
  }
  return NULL;
}

// ---- commands ----

static void cmd_hello(const char *path) {
  int e = conn_open(&conn, path, POOL_SIZE);
  if (e) return answer("err %s hello", ename(e));
  answer("ok id=%" PRIu64, conn.id);
}

static void cmd_acquire(const char *name) {
  size_t len = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_name) + ALIGN8(ITEM_HDR + len);
  struct kdbus_cmd_name *c = calloc(1, size);
  c->size = size;
  c->items[0].size = ITEM_HDR + len;
  c->items[0].type = KDBUS_ITEM_NAME;
  memcpy(c->items[0].str, name, len);
  int r = ioctl(conn.fd, KDBUS_CMD_NAME_ACQUIRE, c) < 0 ? errno : 0;
  free(c);
  if (r) return answer("err %s acquire", ename(r));
  answer("ok");
}

static void cmd_stats(void) {
  if (serving) {
    serving = 0;
    pthread_join(serve_thread, NULL);
  }
  int e = receive_queued();
  if (e) return answer("err %s recv", ename(e));
  char list[MAX_SRCS * 100] = "";
  size_t n = 0;
  for (int i = 0; i < nsrcs; i++) {
    const struct src *s = &srcs[i];
    n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%" PRIu64,
                          i ? "," : "", s->id, s->count, s->dups, s->disorder, s->max);
    if (n >= sizeof(list)) break;
  }
  answer("ok msgs=%" PRIu64 " bad=%" PRIu64 " lost=%" PRIu64 " srcs=%s", msgs, bad, lost, nsrcs ? list : "-");
}

int main(void) {
  answer("ok ready");
  char *av[8];
  int ac;
  while ((ac = next_command(av, 8)) >= 0) {
    if (!ac) continue;
    const char *c = av[0];
    if (!strcmp(c, "setuid") && ac == 2) {
      cmd_drop_to(av[1]);
    } else if (!strcmp(c, "hello") && ac == 2) {
      cmd_hello(av[1]);
    } else if (conn.fd < 0) {
      answer("err ENOTCONN not connected");
    } else if (!strcmp(c, "acquire") && ac == 2) {
      cmd_acquire(av[1]);
    } else if (!strcmp(c, "serve")) {
      serving = 1;
      if (pthread_create(&serve_thread, NULL, serve_main, NULL)) answer("err EAGAIN thread");
      else answer("ok");
    } else if (!strcmp(c, "stats")) {
      cmd_stats();
    } else if (!strcmp(c, "flood") && ac == 2) {
      flood_dst = strtoull(av[1], NULL, 0);
      flooding = 1;
      if (pthread_create(&flood_thread, NULL, flood_main, NULL)) answer("err EAGAIN thread");
      else answer("ok");
    } else if (!strcmp(c, "stop")) {
      if (flooding) {
        flooding = 0;
        pthread_join(flood_thread, NULL);
      }
      answer("ok sent=%" PRIu64 " enobufs=%" PRIu64 " other=%" PRIu64 " other_err=%s", flood_sent, flood_enobufs,
             flood_other, flood_other ? ename(flood_other_err) : "-");
    } else if (!strcmp(c, "calls") && ac == 4) {
      victim_calls(&conn, strtoull(av[1], NULL, 0), atol(av[2]), 0, atoi(av[3]));
    } else if (!strcmp(c, "exit")) {
      break;
    } else {
      answer("err EINVAL unknown command %s", c);
    }
  }
  return 0;
}
