// hostile-cpu: the attacker of test/hostile-cpu.test.ts (issue #17, 5): one
// user whose requests are expensive for the server. Driven like kdbus-peer
// (test/harness.ts Peer): one line when ready, then one command per line on
// stdin, each answered with one line, "ok key=value ..." or "err ENAME ...".
// Written against the kdbus ABI only (include/kdbus-abi.h).
//
// Commands:
//   setuid UID                  drop to UID (gid UID too), the fd limit raised first
//   conns BUS N                 N connections to BUS (the first 16 with 32 MiB
//                               pools, for NAME_LIST answers; the rest 64 KiB)
//   names K                     every connection acquires K names
//   matches K RULES BYTES BLOOM every connection adds K matches of RULES
//                               BLOOM_MASK items of BYTES each (BLOOM: the
//                               bus's bloom size), each mask's generations
//                               all wanting the filter's last bit, which no
//                               broadcast of `broadcast` sets: every rule is
//                               tested to its last word and none matches
//   list SECONDS THREADS        THREADS threads (each on its own connection)
//                               NAME_LIST (names and unique ids) in a loop;
//                               answers n= bytes= (of the last list) max_ms=
//   broadcast SECONDS THREADS BLOOM  THREADS threads broadcast signals with
//                               an all-zero bloom filter of BLOOM bytes; n= max_ms=
//   close                       closes every connection; ms=
//   exit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"

#define MAX_CONNS 1024
#define BIG_POOLS 16
#define BIG_POOL (32u << 20)
#define SMALL_POOL (64u << 10)
#define MAX_THREADS BIG_POOLS

struct conn {
  int fd;
  uint64_t id;
};

static struct conn conns[MAX_CONNS];
static int nconns;

static int free_slice(int fd, uint64_t off) {
  struct kdbus_cmd_free f = { .size = sizeof(f), .offset = off };
  return ioctl(fd, KDBUS_CMD_FREE, &f) < 0 ? errno : 0;
}

static int open_conn(const char *path, struct conn *c, uint64_t pool) {
  c->fd = open(path, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) return errno;
  struct kdbus_cmd_hello h;
  memset(&h, 0, sizeof(h));
  h.size = sizeof(h);
  h.pool_size = pool;
  if (ioctl(c->fd, KDBUS_CMD_HELLO, &h) < 0) {
    int e = errno;
    close(c->fd);
    return e;
  }
  c->id = h.id;
  free_slice(c->fd, h.offset);
  return 0;
}

static int acquire(int fd, const char *name) {
  uint64_t buf[64];
  memset(buf, 0, sizeof(buf));
  struct kdbus_cmd_name *cmd = (struct kdbus_cmd_name *)buf;
  size_t len = strlen(name) + 1;
  cmd->items[0].size = ITEM_HDR + len;
  cmd->items[0].type = KDBUS_ITEM_NAME;
  memcpy(cmd->items[0].str, name, len);
  cmd->size = sizeof(*cmd) + ALIGN8(cmd->items[0].size);
  return ioctl(fd, KDBUS_CMD_NAME_ACQUIRE, cmd) < 0 ? errno : 0;
}

static int add_matches(int fd, int k, int rules, size_t bytes, size_t bloom) {
  size_t item = ALIGN8(ITEM_HDR + bytes);
  size_t size = sizeof(struct kdbus_cmd_match) + rules * item;
  uint8_t *buf = calloc(1, size);
  if (!buf) return ENOMEM;
  struct kdbus_cmd_match *m = (struct kdbus_cmd_match *)buf;
  m->size = size;
  struct kdbus_item *it = m->items;
  for (int r = 0; r < rules; r++, it = ITEM_NEXT(it)) {
    it->size = ITEM_HDR + bytes;
    it->type = KDBUS_ITEM_BLOOM_MASK;
    for (size_t g = 0; g < bytes / bloom; g++) it->data64[(g + 1) * bloom / 8 - 1] = 1ULL << 63;
  }
  int e = 0;
  for (int i = 0; i < k && !e; i++) {
    m->cookie = (uint64_t)i + 1;
    if (ioctl(fd, KDBUS_CMD_MATCH_ADD, m) < 0) e = errno;
  }
  free(buf);
  return e;
}

struct worker {
  pthread_t thread;
  int index;
  int64_t until_ns;
  size_t bloom;
  long n;
  int64_t max_ns;
  uint64_t bytes;
  int err;
};

static void *list_main(void *arg) {
  struct worker *w = arg;
  int fd = conns[w->index].fd;
  while (now_ns() < w->until_ns && !w->err) {
    struct kdbus_cmd_name_list l = { .size = sizeof(l), .flags = KDBUS_NAME_LIST_UNIQUE | KDBUS_NAME_LIST_NAMES };
    int64_t t0 = now_ns();
    if (ioctl(fd, KDBUS_CMD_NAME_LIST, &l) < 0) {
      w->err = errno;
      break;
    }
    int64_t dt = now_ns() - t0;
    if (dt > w->max_ns) w->max_ns = dt;
    w->bytes = l.list_size;
    w->n++;
    free_slice(fd, l.offset);
  }
  return NULL;
}

static void *broadcast_main(void *arg) {
  struct worker *w = arg;
  int fd = conns[w->index].fd;
  size_t size = sizeof(struct kdbus_msg) + ALIGN8(ITEM_HDR + sizeof(struct kdbus_bloom_filter) + w->bloom);
  uint64_t *buf = calloc(1, size);
  struct kdbus_msg *m = (struct kdbus_msg *)buf;
  m->size = size;
  m->flags = KDBUS_MSG_SIGNAL;
  m->dst_id = KDBUS_DST_ID_BROADCAST;
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->items[0].size = ITEM_HDR + sizeof(struct kdbus_bloom_filter) + w->bloom;
  m->items[0].type = KDBUS_ITEM_BLOOM_FILTER;
  struct kdbus_cmd_send s = { .size = sizeof(s), .msg_address = (uintptr_t)m };
  while (now_ns() < w->until_ns && !w->err) {
    m->cookie = (uint64_t)w->n + 1;
    int64_t t0 = now_ns();
    if (ioctl(fd, KDBUS_CMD_SEND, &s) < 0) w->err = errno;
    int64_t dt = now_ns() - t0;
    if (dt > w->max_ns) w->max_ns = dt;
    w->n++;
  }
  free(buf);
  return NULL;
}

static void run_workers(void *(*fn)(void *), double seconds, int threads, size_t bloom, const char *what) {
  struct worker w[MAX_THREADS];
  if (threads < 1 || threads > MAX_THREADS || threads > nconns) {
    answer("err EINVAL threads");
    return;
  }
  int64_t until = now_ns() + (int64_t)(seconds * 1e9);
  for (int i = 0; i < threads; i++) {
    w[i] = (struct worker){ .index = i, .until_ns = until, .bloom = bloom };
    pthread_create(&w[i].thread, NULL, fn, &w[i]);
  }
  long n = 0;
  int64_t max = 0;
  uint64_t bytes = 0;
  int err = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(w[i].thread, NULL);
    n += w[i].n;
    if (w[i].max_ns > max) max = w[i].max_ns;
    if (w[i].bytes) bytes = w[i].bytes;
    if (w[i].err && !err) err = w[i].err;
  }
  if (err) answer("err %s %s n=%ld", ename(err), what, n);
  else answer("ok n=%ld bytes=%" PRIu64 " max_ms=%.1f", n, bytes, max / 1e6);
}

int main(void) {
  answer("ok ready");
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) > 0) {
    if (line[len - 1] == '\n') line[len - 1] = 0;
    char *av[8];
    int ac = 0;
    for (char *save = NULL, *t = strtok_r(line, " ", &save); t && ac < 8; t = strtok_r(NULL, " ", &save)) av[ac++] = t;
    if (!ac) continue;
    if (!strcmp(av[0], "setuid") && ac == 2) {
      unsigned id = (unsigned)atoi(av[1]);
      struct rlimit rl = { MAX_CONNS + 64, MAX_CONNS + 64 };
      if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || setgid(id) < 0 || setuid(id) < 0) answer("err %s setuid", ename(errno));
      else answer("ok");
    } else if (!strcmp(av[0], "conns") && ac == 3) {
      int n = atoi(av[2]), e = 0;
      while (nconns < n && nconns < MAX_CONNS && !e) {
        e = open_conn(av[1], &conns[nconns], nconns < BIG_POOLS ? BIG_POOL : SMALL_POOL);
        if (!e) nconns++;
      }
      if (e) answer("err %s hello conns=%d", ename(e), nconns);
      else answer("ok conns=%d", nconns);
    } else if (!strcmp(av[0], "names") && ac == 2) {
      int k = atoi(av[1]), e = 0;
      char name[64];
      for (int c = 0; c < nconns && !e; c++) {
        for (int i = 0; i < k && !e; i++) {
          snprintf(name, sizeof(name), "org.attacker%d.c%d.n%d", (int)getuid(), c, i);
          e = acquire(conns[c].fd, name);
        }
      }
      if (e) answer("err %s acquire", ename(e));
      else answer("ok names=%d", nconns * k);
    } else if (!strcmp(av[0], "matches") && ac == 5) {
      int e = 0;
      for (int c = 0; c < nconns && !e; c++)
        e = add_matches(conns[c].fd, atoi(av[1]), atoi(av[2]), strtoul(av[3], NULL, 0), strtoul(av[4], NULL, 0));
      if (e) answer("err %s match add", ename(e));
      else answer("ok matches=%d", nconns * atoi(av[1]));
    } else if (!strcmp(av[0], "list") && ac == 3) {
      run_workers(list_main, atof(av[1]), atoi(av[2]), 0, "list");
    } else if (!strcmp(av[0], "broadcast") && ac == 4) {
      run_workers(broadcast_main, atof(av[1]), atoi(av[2]), strtoul(av[3], NULL, 0), "send");
    } else if (!strcmp(av[0], "close")) {
      int64_t t0 = now_ns();
      for (int c = 0; c < nconns; c++) close(conns[c].fd);
      nconns = 0;
      answer("ok ms=%.1f", (now_ns() - t0) / 1e6);
    } else if (!strcmp(av[0], "exit")) {
      answer("ok");
      return 0;
    } else {
      answer("err EINVAL unknown command");
    }
  }
  return 0;
}
