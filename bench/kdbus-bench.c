/*
 * kdbus clients of the benchmark suite, written against kdbus.h only.
 *
 *   kdbus-bench ROOT call SIZE SECONDS REPS    us per synchronous method call
 *       (SEND with KDBUS_SEND_SYNC_REPLY + EXPECT_REPLY; the server RECVs and
 *       replies with cookie_reply; SIZE bytes of PAYLOAD_VEC both ways)
 *   kdbus-bench ROOT signal NSUBS SECONDS REPS BATCH   deliveries per second
 *       (broadcast with a bloom filter, NSUBS subscribers with a bloom-mask
 *       match; every subscriber acknowledges each BATCH signals with a
 *       unicast, so no queue overflows)
 *   kdbus-bench ROOT connect SECONDS REPS      us per connection
 *       (open, HELLO, mmap, FREE of the HELLO slice, munmap, close)
 *   kdbus-bench ROOT idle N                    N connections held open until
 *       stdin is closed ("ready" on stdout once all are connected)
 *
 * Every received slice (HELLO, RECV, synchronous reply) is FREEd.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "kdbus-abi.h"
#include "common.h"

#define ALIGN8(x) (((x) + 7) & ~7ULL)
#define ITEM_HDR offsetof(struct kdbus_item, data)
#define BLOOM_SIZE 64
#define POOL_SIZE (16 * 1024 * 1024)

static const char *root;
static char bus_path[512];
static int control_fd = -1;

struct conn {
  int fd;
  uint64_t id;
  uint8_t *pool;
};

static void make_bus(const char *tag) {
  struct {
    struct kdbus_cmd_make head;
    struct { uint64_t size, type; struct kdbus_bloom_parameter bloom; } bp;
    struct { uint64_t size, type, flags; } attach[2];
    struct { uint64_t size, type; char str[64]; } name;
  } m;
  char path[512];
  snprintf(path, sizeof path, "%s/control", root);
  control_fd = open(path, O_RDWR | O_CLOEXEC);
  if (control_fd < 0) die("open %s: %m", path);
  memset(&m, 0, sizeof m);
  m.bp.size = sizeof m.bp;
  m.bp.type = KDBUS_ITEM_BLOOM_PARAMETER;
  m.bp.bloom.size = BLOOM_SIZE;
  m.bp.bloom.n_hash = 1;
  m.attach[0].size = m.attach[1].size = sizeof m.attach[0];
  m.attach[0].type = KDBUS_ITEM_ATTACH_FLAGS_RECV;
  m.attach[1].type = KDBUS_ITEM_ATTACH_FLAGS_SEND;
  snprintf(m.name.str, sizeof m.name.str, "%u-bench-%s-%d", getuid(), tag, getpid());
  m.name.type = KDBUS_ITEM_MAKE_NAME;
  m.name.size = ITEM_HDR + strlen(m.name.str) + 1;
  m.head.flags = KDBUS_MAKE_ACCESS_WORLD;
  m.head.size = sizeof m.head + m.bp.size + 2 * sizeof m.attach[0] + ALIGN8(m.name.size);
  if (ioctl(control_fd, KDBUS_CMD_BUS_MAKE, &m) < 0) die("BUS_MAKE: %m");
  snprintf(bus_path, sizeof bus_path, "%s/%s/bus", root, m.name.str);
}

static void kfree(struct conn *c, uint64_t offset) {
  struct kdbus_cmd_free f = { .size = sizeof f, .offset = offset };
  if (ioctl(c->fd, KDBUS_CMD_FREE, &f) < 0) die("FREE: %m");
}

static void conn_open(struct conn *c) {
  struct kdbus_cmd_hello h;
  c->fd = open(bus_path, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) die("open %s: %m", bus_path);
  memset(&h, 0, sizeof h);
  h.size = sizeof h;
  h.pool_size = POOL_SIZE;
  if (ioctl(c->fd, KDBUS_CMD_HELLO, &h) < 0) die("HELLO: %m");
  c->id = h.id;
  c->pool = mmap(NULL, POOL_SIZE, PROT_READ, MAP_SHARED, c->fd, 0);
  if (c->pool == MAP_FAILED) die("mmap: %m");
  kfree(c, h.offset);
}

static void conn_close(struct conn *c) {
  munmap(c->pool, POOL_SIZE);
  close(c->fd);
}

static void wait_in(struct conn *c, int timeout_ms) {
  struct pollfd p = { .fd = c->fd, .events = POLLIN };
  int r = poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR) die("poll: %m");
  if (r == 0) die("kdbus: nothing received for %d ms (lost message?)", timeout_ms);
}

/* RECV one message; returns it (in the pool) or NULL on EAGAIN. */
static struct kdbus_msg *recv_msg(struct conn *c, uint64_t *offset) {
  struct kdbus_cmd_recv r = { .size = sizeof r };
  if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) {
    if (errno == EAGAIN) return NULL;
    die("RECV: %m");
  }
  if (r.dropped_msgs) die("RECV: %llu messages dropped", (unsigned long long)r.dropped_msgs);
  *offset = r.msg.offset;
  return (struct kdbus_msg *)(c->pool + r.msg.offset);
}

/* The first payload of a pool message: pointer and size. PAYLOAD_OFF offsets
 * are pool-relative, as the kernel and its selftests had them (kdbus.h's
 * comment says "relative to the message head"). */
static const void *msg_payload(const uint8_t *pool, struct kdbus_msg *m, uint64_t *size) {
  struct kdbus_item *it = m->items;
  while ((uint8_t *)it < (uint8_t *)m + m->size) {
    if (it->type == KDBUS_ITEM_PAYLOAD_OFF) {
      *size = it->vec.size;
      return pool + it->vec.offset;
    }
    it = (struct kdbus_item *)((uint8_t *)it + ALIGN8(it->size));
  }
  *size = 0;
  return NULL;
}

/* A message with one PAYLOAD_VEC item and, optionally, a bloom filter. */
struct out_msg {
  struct kdbus_msg msg;
  struct { uint64_t size, type; struct kdbus_vec vec; } payload;
  struct { uint64_t size, type; struct kdbus_bloom_filter f; uint64_t data[BLOOM_SIZE / 8]; } bloom;
};

static void msg_init(struct out_msg *o, const void *data, uint64_t size, int bloom) {
  memset(o, 0, sizeof *o);
  o->payload.size = sizeof o->payload;
  o->payload.type = KDBUS_ITEM_PAYLOAD_VEC;
  o->payload.vec.address = (uintptr_t)data;
  o->payload.vec.size = size;
  o->msg.size = sizeof o->msg + sizeof o->payload;
  o->msg.payload_type = KDBUS_PAYLOAD_DBUS;
  if (bloom) {
    o->bloom.size = sizeof o->bloom;
    o->bloom.type = KDBUS_ITEM_BLOOM_FILTER;
    o->bloom.data[0] = 1;
    o->msg.size += sizeof o->bloom;
  }
}

static void send_msg(struct conn *c, struct out_msg *o) {
  struct kdbus_cmd_send s = { .size = sizeof s, .msg_address = (uintptr_t)&o->msg };
  if (ioctl(c->fd, KDBUS_CMD_SEND, &s) < 0) die("SEND: %m");
}

static uint64_t cookie = 1;

static pid_t fork_child(void) {
  pid_t p = fork();
  if (p < 0) die("fork: %m");
  if (p == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
  return p;
}

/* ---- call ---- */
static void call_server(int ready_fd) {
  struct conn c;
  conn_open(&c);
  if (write(ready_fd, &c.id, sizeof c.id) != sizeof c.id) die("pipe: %m");
  for (;;) {
    uint64_t off, size;
    struct kdbus_msg *m = recv_msg(&c, &off);
    if (!m) { wait_in(&c, -1); continue; }
    const void *data = msg_payload(c.pool, m, &size);
    struct out_msg o;
    msg_init(&o, data, size, 0);
    o.msg.dst_id = m->src_id;
    o.msg.cookie = cookie++;
    o.msg.cookie_reply = m->cookie;
    send_msg(&c, &o);
    kfree(&c, off);
  }
}

static void bench_call(uint64_t size, double seconds, int reps) {
  int p[2];
  uint64_t server_id;
  if (pipe(p) < 0) die("pipe: %m");
  pid_t pid = fork_child();
  if (pid == 0) call_server(p[1]);
  if (read(p[0], &server_id, sizeof server_id) != sizeof server_id) die("server did not start");
  struct conn c;
  conn_open(&c);
  uint8_t *buf = malloc(size ? size : 1);
  memset(buf, 0xa5, size);
  struct out_msg o;
  msg_init(&o, buf, size, 0);
  o.msg.flags = KDBUS_MSG_EXPECT_REPLY;
  o.msg.dst_id = server_id;
  RUN_REPS(seconds, reps, 10, 1, 1, {
    struct kdbus_cmd_send s = { .size = sizeof s, .flags = KDBUS_SEND_SYNC_REPLY,
                                .msg_address = (uintptr_t)&o.msg };
    uint64_t got;
    o.msg.cookie = cookie++;
    o.msg.timeout_ns = now_ns() + 10000000000ULL;
    if (ioctl(c.fd, KDBUS_CMD_SEND, &s) < 0) die("SEND sync: %m");
    struct kdbus_msg *r = (struct kdbus_msg *)(c.pool + s.reply.offset);
    const uint8_t *d = msg_payload(c.pool, r, &got);
    if (got != size || (size && d[size - 1] != 0xa5)) die("bad reply: %llu bytes, last %d, src %llu cookie_reply %llu want %llu, msg size %llu", (unsigned long long)got, d ? d[size-1] : -1, (unsigned long long)r->src_id, (unsigned long long)r->cookie_reply, (unsigned long long)o.msg.cookie, (unsigned long long)r->size);
    kfree(&c, s.reply.offset);
  });
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* ---- signal ---- */
static void subscriber(uint64_t emitter, int batch, int ready_fd) {
  struct conn c;
  conn_open(&c);
  struct {
    struct kdbus_cmd_match head;
    struct { uint64_t size, type; uint64_t mask[BLOOM_SIZE / 8]; } mask;
  } mt;
  memset(&mt, 0, sizeof mt);
  mt.head.size = sizeof mt;
  mt.mask.size = sizeof mt.mask;
  mt.mask.type = KDBUS_ITEM_BLOOM_MASK;
  mt.mask.mask[0] = 1;
  if (ioctl(c.fd, KDBUS_CMD_MATCH_ADD, &mt) < 0) die("MATCH_ADD: %m");
  if (write(ready_fd, "r", 1) != 1) die("pipe: %m");
  uint64_t ack = 0;
  struct out_msg o;
  msg_init(&o, &ack, sizeof ack, 0);
  o.msg.dst_id = emitter;
  long n = 0;
  for (;;) {
    uint64_t off;
    struct kdbus_msg *m = recv_msg(&c, &off);
    if (!m) { wait_in(&c, -1); continue; }
    kfree(&c, off);
    if (++n % batch == 0) {
      o.msg.cookie = cookie++;
      send_msg(&c, &o);
    }
  }
}

static void bench_signal(int nsubs, double seconds, int reps, int batch) {
  struct conn c;
  int p[2];
  pid_t pids[1024];
  conn_open(&c);
  if (pipe(p) < 0) die("pipe: %m");
  for (int i = 0; i < nsubs; i++) {
    pids[i] = fork_child();
    if (pids[i] == 0) subscriber(c.id, batch, p[1]);
  }
  for (int i = 0; i < nsubs; i++) {
    char ch;
    if (read(p[0], &ch, 1) != 1) die("subscriber did not start");
  }
  uint64_t value = 42;
  struct out_msg o;
  msg_init(&o, &value, sizeof value, 1);
  o.msg.dst_id = KDBUS_DST_ID_BROADCAST;
  o.msg.flags = KDBUS_MSG_SIGNAL;
  RUN_REPS(seconds, reps, 3, 0, (double)batch * nsubs, {
    for (int i = 0; i < batch; i++) {
      o.msg.cookie = cookie++;
      send_msg(&c, &o);
    }
    for (int acks = 0; acks < nsubs;) {
      uint64_t off;
      struct kdbus_msg *m = recv_msg(&c, &off);
      if (!m) { wait_in(&c, 10000); continue; }
      kfree(&c, off);
      acks++;
    }
  });
  for (int i = 0; i < nsubs; i++) kill(pids[i], SIGKILL);
  for (int i = 0; i < nsubs; i++) waitpid(pids[i], NULL, 0);
}

/* ---- connect ---- */
static void bench_connect(double seconds, int reps) {
  RUN_REPS(seconds, reps, 10, 1, 1, {
    struct conn c;
    conn_open(&c);
    conn_close(&c);
  });
}

/* ---- idle ---- */
static void idle(int n) {
  struct rlimit rl = { n + 64, n + 64 };
  setrlimit(RLIMIT_NOFILE, &rl);
  struct conn *c = calloc(n, sizeof *c);
  for (int i = 0; i < n; i++) conn_open(&c[i]);
  printf("ready\n");
  fflush(stdout);
  char b[64];
  while (read(0, b, sizeof b) > 0) {}
  for (int i = 0; i < n; i++) conn_close(&c[i]);
}

int main(int argc, char **argv) {
  if (argc < 4) die("usage: kdbus-bench ROOT call|signal|connect|idle ARGS...");
  root = argv[1];
  const char *mode = argv[2];
  signal(SIGPIPE, SIG_IGN);
  make_bus(mode);
  if (!strcmp(mode, "call") && argc == 6)
    bench_call(strtoull(argv[3], NULL, 0), atof(argv[4]), atoi(argv[5]));
  else if (!strcmp(mode, "signal") && argc == 7)
    bench_signal(atoi(argv[3]), atof(argv[4]), atoi(argv[5]), atoi(argv[6]));
  else if (!strcmp(mode, "connect") && argc == 5)
    bench_connect(atof(argv[3]), atoi(argv[4]));
  else if (!strcmp(mode, "idle") && argc == 4)
    idle(atoi(argv[3]));
  else
    die("bad arguments");
  return 0;
}
