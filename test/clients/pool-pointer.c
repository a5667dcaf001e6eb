// pool-pointer: commands whose pointers lead into a page of a kdbusfs pool
// mapping that was never read (test/pool-pointer.test.ts). Written against
// the kdbus ABI only (include/kdbus-abi.h).
//
// Usage: pool-pointer DIR CASE...
//   Makes bus 0-poolptr-PID on DIR/control, connects A and B (1 MiB pools,
//   mapped and not touched), runs each CASE in order and prints one line per
//   case: "CASE ok ..." or "CASE FAIL ...". Exits 0 when every case is ok.
//
// With page-cache pools (--no-passthrough) such a page is read through the
// very server that reads the pointer: each case stalls a server that cannot
// answer its own page fault.
//   msg    A's SEND with msg_address in A's own pool: EINVAL (the page holds
//          zeros, a message of size 0)
//   other  the same into B's pool (another open file of the same process)
//   vec    a PAYLOAD_VEC pointing at A's HELLO items in A's pool, after the
//          page was evicted from the page cache: B receives exactly those
//          bytes ("evicted=1" when the eviction took)
//   cmd    a SEND command whose head is written at the end of one page of a
//          private, writable mapping of A's pool and whose items lie in the
//          next page, never touched: EINVAL (an item of size 0)
//   store  many rounds of: A's pool evicted and mapped again, then a thread
//          of A reads the page where B's next message to A will land while
//          B sends it: the server's NOTIFY_STORE of that page waits for the
//          page lock A's fault holds until its READ is answered
//   pass   a plain message A -> B arrives (the server still serves)
//   foreign=DIR2  connects C to a bus made on the kdbusfs mount DIR2 (another
//          server, page-cache pools), prints "foreign ready" and waits for a
//          line on stdin (the test stops DIR2's server meanwhile), then sends
//          on A with msg_address in C's pool: EFAULT, A's memory task
//          having given up on that page (DIR2's server does not answer)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

#define POOL (1 << 20)
#define PAGE 4096

struct conn {
  int fd;
  uint64_t id;
  uint8_t *pool;
  uint64_t hello_off, hello_size;
};

static struct kdbus_item *add_item(uint8_t **w, uint64_t type, uint64_t payload) {
  struct kdbus_item *it = (void *)*w;
  memset(it, 0, ALIGN8(ITEM_HDR + payload));
  it->size = ITEM_HDR + payload;
  it->type = type;
  *w += ALIGN8(it->size);
  return it;
}

// Makes bus NAME on DIR/control and sets path to DIR/NAME/bus.
static int make_bus(const char *dir, const char *name, char *path, size_t len) {
  char control[4096];
  snprintf(control, sizeof(control), "%s/control", dir);
  snprintf(path, len, "%s/%s/bus", dir, name);
  int fd = open(control, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  uint64_t buf[64] = {0};
  uint8_t *w = (uint8_t *)buf;
  struct kdbus_cmd_make *m = (void *)w;
  w += sizeof(*m);
  m->flags = KDBUS_MAKE_ACCESS_WORLD;
  struct kdbus_item *it = add_item(&w, KDBUS_ITEM_BLOOM_PARAMETER, sizeof(struct kdbus_bloom_parameter));
  it->bloom_parameter.size = 8;
  it->bloom_parameter.n_hash = 1;
  it = add_item(&w, KDBUS_ITEM_MAKE_NAME, strlen(name) + 1);
  strcpy(it->str, name);
  m->size = (uint64_t)(w - (uint8_t *)buf);
  if (ioctl(fd, KDBUS_CMD_BUS_MAKE, m) < 0) return -1;
  return fd;  // kept open: the bus lives as long
}

static int connect_bus(struct conn *c, const char *path) {
  c->fd = open(path, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) return -1;
  struct kdbus_cmd_hello h;
  memset(&h, 0, sizeof(h));
  h.size = sizeof(h);
  h.pool_size = POOL;
  if (ioctl(c->fd, KDBUS_CMD_HELLO, &h) < 0) return -1;
  c->id = h.id;
  c->hello_off = h.offset;
  c->hello_size = h.items_size;
  c->pool = mmap(NULL, POOL, PROT_READ, MAP_SHARED, c->fd, 0);
  return c->pool == MAP_FAILED ? -1 : 0;
}

// SEND of the message at msg; returns 0 or errno.
static int send_at(struct conn *c, const void *msg) {
  struct kdbus_cmd_send s;
  memset(&s, 0, sizeof(s));
  s.size = sizeof(s);
  s.msg_address = (uintptr_t)msg;
  return ioctl(c->fd, KDBUS_CMD_SEND, &s) < 0 ? errno : 0;
}

// A message to dst with one PAYLOAD_VEC (addr, size) built in buf.
static void *vec_msg(uint64_t *buf, uint64_t dst, uint64_t cookie, const void *addr, uint64_t size) {
  uint8_t *w = (uint8_t *)buf;
  struct kdbus_msg *m = (void *)w;
  memset(m, 0, sizeof(*m));
  m->dst_id = dst;
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->cookie = cookie;
  w += sizeof(*m);
  struct kdbus_item *it = add_item(&w, KDBUS_ITEM_PAYLOAD_VEC, sizeof(struct kdbus_vec));
  it->vec.address = (uintptr_t)addr;
  it->vec.size = size;
  m->size = (uint64_t)(w - (uint8_t *)buf);
  return m;
}

// RECV on c: copies the payload of the message into out (at most cap bytes);
// returns its size, or -errno. Checks the cookie.
static int64_t recv_payload(struct conn *c, uint64_t cookie, uint8_t *out, uint64_t cap) {
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) return -errno;
  const struct kdbus_msg *m = (const void *)(c->pool + r.msg.offset);
  int64_t n = m->cookie == cookie ? 0 : -EBADMSG;
  for (const struct kdbus_item *i = m->items; n >= 0 && (const uint8_t *)i < (const uint8_t *)m + m->size;
       i = (const void *)((const uint8_t *)i + ALIGN8(i->size))) {
    if (i->size < ITEM_HDR) break;
    if (i->type != KDBUS_ITEM_PAYLOAD_OFF || i->vec.offset == ~0ULL) continue;
    if ((uint64_t)n + i->vec.size > cap) return -E2BIG;
    memcpy(out + n, c->pool + i->vec.offset, i->vec.size);
    n += (int64_t)i->vec.size;
  }
  struct kdbus_cmd_free f = {.size = sizeof(f), .offset = r.msg.offset};
  ioctl(c->fd, KDBUS_CMD_FREE, &f);
  return n;
}

static int expect_errno(const char *name, int got, int want) {
  if (got == want) {
    printf("%s ok errno=%s\n", name, strerrorname_np(got) ? strerrorname_np(got) : "0");
    return 0;
  }
  printf("%s FAIL errno=%s want=%s\n", name, got ? strerrorname_np(got) : "0", strerrorname_np(want));
  return 1;
}

static int case_msg(struct conn *a, struct conn *b) {
  return expect_errno("msg", send_at(a, a->pool + POOL / 2), EINVAL);
}

static int case_other(struct conn *a, struct conn *b) {
  return expect_errno("other", send_at(a, b->pool + POOL / 2 + PAGE), EINVAL);
}

static int case_vec(struct conn *a, struct conn *b) {
  uint64_t size = a->hello_size;
  if (size == 0 || size > PAGE) {
    printf("vec FAIL hello items_size=%" PRIu64 "\n", size);
    return 1;
  }
  static uint8_t want[PAGE], got[PAGE];
  memcpy(want, a->pool + a->hello_off, size);
  // Out of the page cache: unmapped, clean pages go with FADV_DONTNEED.
  munmap(a->pool, POOL);
  posix_fadvise(a->fd, 0, 0, POSIX_FADV_DONTNEED);
  a->pool = mmap(NULL, POOL, PROT_READ, MAP_SHARED, a->fd, 0);
  if (a->pool == MAP_FAILED) {
    printf("vec FAIL mmap: %s\n", strerror(errno));
    return 1;
  }
  uint64_t page = a->hello_off & ~(uint64_t)(PAGE - 1);
  unsigned char resident = 1;
  int evicted = mincore(a->pool + page, PAGE, &resident) == 0 && !(resident & 1);
  uint64_t buf[64];
  int e = send_at(a, vec_msg(buf, b->id, 77, a->pool + a->hello_off, size));
  if (e) return expect_errno("vec", e, 0);
  int64_t n = recv_payload(b, 77, got, sizeof(got));
  if (n != (int64_t)size || memcmp(got, want, size) != 0) {
    printf("vec FAIL received=%" PRId64 " of %" PRIu64 " bytes%s evicted=%d\n", n, size,
           n == (int64_t)size ? ", different" : "", evicted);
    return 1;
  }
  printf("vec ok bytes=%" PRIu64 " evicted=%d\n", size, evicted);
  return 0;
}

static int case_cmd(struct conn *a, struct conn *b) {
  uint8_t *p = mmap(NULL, POOL, PROT_READ | PROT_WRITE, MAP_PRIVATE, a->fd, 0);
  if (p == MAP_FAILED) {
    printf("cmd FAIL mmap: %s\n", strerror(errno));
    return 1;
  }
  uint64_t msgbuf[64];
  void *msg = vec_msg(msgbuf, b->id, 78, "x", 1);
  // The head ends exactly where page 3 ends; one item header would follow in page 4.
  struct kdbus_cmd_send *s = (void *)(p + 4 * PAGE - sizeof(*s));
  memset(s, 0, sizeof(*s));
  s->size = sizeof(*s) + ITEM_HDR;
  s->msg_address = (uintptr_t)msg;
  int e = ioctl(a->fd, KDBUS_CMD_SEND, s) < 0 ? errno : 0;
  munmap(p, POOL);
  return expect_errno("cmd", e, EINVAL);
}

struct toucher {
  volatile const uint8_t *target;
  volatile int go;  // 1: touch target after delay spins, then back to 0
  volatile unsigned delay;
  volatile uint8_t sink;
};

static void *touch_main(void *arg) {
  struct toucher *t = arg;
  for (;;) {
    while (!__atomic_load_n(&t->go, __ATOMIC_ACQUIRE)) {
    }
    if (!t->target) return NULL;
    for (volatile unsigned k = 0; k < t->delay; k++) {
    }
    t->sink += *t->target;
    __atomic_store_n(&t->go, 0, __ATOMIC_RELEASE);
  }
}

static int case_store(struct conn *a, struct conn *b) {
  enum { ROUNDS = 400 };
  static struct toucher t;
  pthread_t th;
  pthread_create(&th, NULL, touch_main, &t);
  uint64_t buf[64];
  uint8_t got[64];
  static const char text[] = "lands on a page being read";
  uint64_t page = a->hello_off + ALIGN8(a->hello_size);  // where the next slice goes
  page &= ~(uint64_t)(PAGE - 1);
  unsigned seed = 1;
  int failed = 0;
  for (int round = 0; round < ROUNDS && !failed; round++) {
    munmap(a->pool, POOL);
    posix_fadvise(a->fd, 0, 0, POSIX_FADV_DONTNEED);
    a->pool = mmap(NULL, POOL, PROT_READ, MAP_SHARED, a->fd, 0);
    if (a->pool == MAP_FAILED) {
      printf("store FAIL mmap: %s\n", strerror(errno));
      return 1;
    }
    seed = seed * 1103515245 + 12345;
    t.delay = (seed >> 8) % 40000;
    t.target = a->pool + page;
    __atomic_store_n(&t.go, 1, __ATOMIC_RELEASE);
    int e = send_at(b, vec_msg(buf, a->id, 1000 + round, text, sizeof(text)));
    while (__atomic_load_n(&t.go, __ATOMIC_ACQUIRE)) {
    }
    int64_t n = e ? -e : recv_payload(a, 1000 + round, got, sizeof(got));
    if (n != sizeof(text) || memcmp(got, text, sizeof(text)) != 0) {
      printf("store FAIL round=%d send=%s received=%" PRId64 "\n", round, e ? strerrorname_np(e) : "0", n);
      failed = 1;
    }
  }
  t.target = NULL;
  __atomic_store_n(&t.go, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  if (!failed) printf("store ok rounds=%d\n", ROUNDS);
  return failed;
}

static int case_pass(struct conn *a, struct conn *b) {
  static const char text[] = "still serving";
  uint64_t buf[64];
  uint8_t got[64];
  int e = send_at(a, vec_msg(buf, b->id, 79, text, sizeof(text)));
  if (e) return expect_errno("pass", e, 0);
  int64_t n = recv_payload(b, 79, got, sizeof(got));
  if (n != sizeof(text) || memcmp(got, text, sizeof(text)) != 0) {
    printf("pass FAIL received=%" PRId64 "\n", n);
    return 1;
  }
  printf("pass ok\n");
  return 0;
}

static int case_foreign(struct conn *a, const char *dir2) {
  char name[64], path[4096];
  snprintf(name, sizeof(name), "0-poolptr-foreign-%d", (int)getpid());
  struct conn c;
  if (make_bus(dir2, name, path, sizeof(path)) < 0 || connect_bus(&c, path) < 0) {
    printf("foreign FAIL on %s: %s\n", dir2, strerror(errno));
    return 1;
  }
  printf("foreign ready\n");
  char line[16];
  if (!fgets(line, sizeof(line), stdin)) {
    printf("foreign FAIL no go line\n");
    return 1;
  }
  return expect_errno("foreign", send_at(a, c.pool + POOL / 2), EFAULT);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s DIR CASE...\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char name[64], path[4096];
  snprintf(name, sizeof(name), "0-poolptr-%d", (int)getpid());
  if (make_bus(argv[1], name, path, sizeof(path)) < 0) {
    perror("BUS_MAKE");
    return 2;
  }
  struct conn a, b;
  if (connect_bus(&a, path) < 0 || connect_bus(&b, path) < 0) {
    perror("HELLO");
    return 2;
  }
  static const struct {
    const char *name;
    int (*run)(struct conn *, struct conn *);
  } cases[] = {{"msg", case_msg}, {"other", case_other}, {"vec", case_vec}, {"cmd", case_cmd}, {"store", case_store}, {"pass", case_pass}};
  int failed = 0;
  for (int i = 2; i < argc; i++) {
    if (strncmp(argv[i], "foreign=", 8) == 0) {
      failed |= case_foreign(&a, argv[i] + 8);
      continue;
    }
    size_t k = 0;
    while (k < sizeof(cases) / sizeof(cases[0]) && strcmp(cases[k].name, argv[i]) != 0) k++;
    if (k == sizeof(cases) / sizeof(cases[0])) {
      fprintf(stderr, "unknown case %s\n", argv[i]);
      return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    failed |= cases[k].run(&a, &b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (getenv("POOL_POINTER_TIMES"))
      fprintf(stderr, "%s: %.3f ms\n", argv[i], (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
  }
  return failed;
}
