/*
 * kdbus clients timing the fd paths, written against kdbus.h only.
 *
 *   fd-recv ROOT recv-fd N REPS      us per RECV of a message carrying 1 fd
 *       (a pipe end, KDBUS_ITEM_FDS): the RECV ioctl alone is timed
 *   fd-recv ROOT recv-memfd N REPS   the same with a sealed 4 KiB memfd
 *       (KDBUS_ITEM_PAYLOAD_MEMFD)
 *   fd-recv ROOT send-memfd N REPS   us per SEND the way the upstream
 *       message-quota selftest makes them (EXPECT_REPLY, 128 KiB + 3 of
 *       PAYLOAD_VEC, a 1 MiB sealed memfd, receivers that ask for all
 *       metadata): 16 SENDs to each of 8 fresh receivers per round (the
 *       selftest must make those 128 within their 100 ms reply timeout),
 *       N rounds per rep; the SEND ioctl alone is timed
 *
 * Prints one figure per rep (the mean of N ops), after one warm-up rep. One
 * process, two connections: the sender and the receiver; every slice is
 * FREEd and every received fd closed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "kdbus-abi.h"
#include "common.h"

#define ALIGN8(x) (((x) + 7) & ~7ULL)
#define ITEM_HDR offsetof(struct kdbus_item, data)
#define POOL_SIZE (16 * 1024 * 1024)

static const char *root;
static char bus_path[512];

struct conn {
  int fd;
  uint64_t id;
  uint8_t *pool;
};

static void make_bus(int control_fd) {
  struct {
    struct kdbus_cmd_make head;
    struct { uint64_t size, type; struct kdbus_bloom_parameter bloom; } bp;
    struct { uint64_t size, type; char str[64]; } name;
  } m;
  memset(&m, 0, sizeof m);
  m.bp.size = sizeof m.bp;
  m.bp.type = KDBUS_ITEM_BLOOM_PARAMETER;
  m.bp.bloom.size = 64;
  m.bp.bloom.n_hash = 1;
  snprintf(m.name.str, sizeof m.name.str, "%u-fdbench-%d", getuid(), getpid());
  m.name.type = KDBUS_ITEM_MAKE_NAME;
  m.name.size = ITEM_HDR + strlen(m.name.str) + 1;
  m.head.flags = KDBUS_MAKE_ACCESS_WORLD;
  m.head.size = sizeof m.head + m.bp.size + ALIGN8(m.name.size);
  if (ioctl(control_fd, KDBUS_CMD_BUS_MAKE, &m) < 0) die("BUS_MAKE: %m");
  snprintf(bus_path, sizeof bus_path, "%s/%s/bus", root, m.name.str);
}

static void kfree(struct conn *c, uint64_t offset) {
  struct kdbus_cmd_free f = { .size = sizeof f, .offset = offset };
  if (ioctl(c->fd, KDBUS_CMD_FREE, &f) < 0) die("FREE: %m");
}

static uint64_t attach_recv;  /* HELLO's attach_flags_recv */

static void conn_close(struct conn *c) {
  munmap(c->pool, POOL_SIZE);
  close(c->fd);
}

static void conn_open(struct conn *c) {
  struct kdbus_cmd_hello h;
  c->fd = open(bus_path, O_RDWR | O_CLOEXEC);
  if (c->fd < 0) die("open %s: %m", bus_path);
  memset(&h, 0, sizeof h);
  h.size = sizeof h;
  h.flags = KDBUS_HELLO_ACCEPT_FD;
  h.attach_flags_send = _KDBUS_ATTACH_ALL;
  h.attach_flags_recv = attach_recv;
  h.pool_size = POOL_SIZE;
  if (ioctl(c->fd, KDBUS_CMD_HELLO, &h) < 0) die("HELLO: %m");
  c->id = h.id;
  c->pool = mmap(NULL, POOL_SIZE, PROT_READ, MAP_SHARED, c->fd, 0);
  if (c->pool == MAP_FAILED) die("mmap: %m");
  kfree(c, h.offset);
}

static int sealed_memfd(size_t size) {
  int fd = memfd_create("fd-recv", MFD_ALLOW_SEALING | MFD_CLOEXEC);
  if (fd < 0) die("memfd_create: %m");
  if (ftruncate(fd, size) < 0) die("ftruncate: %m");
  if (pwrite(fd, "fd-recv", 7, 0) != 7) die("write: %m");
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
    die("F_ADD_SEALS: %m");
  return fd;
}

static uint64_t cookie = 1;
static char payload[128 * 1024 + 3] = "0123456789_0";

/* kind: 0 one fd, 1 a 4 KiB memfd, 2 the message-quota message. */
static void send_one(struct conn *from, uint64_t dst, int kind, int fd) {
  struct {
    struct kdbus_msg msg;
    struct { uint64_t size, type; struct kdbus_vec vec; } vec;
    union {
      struct { uint64_t size, type; int fds[2]; } fds;
      struct { uint64_t size, type; struct kdbus_memfd memfd; } memfd;
    };
  } m;
  memset(&m, 0, sizeof m);
  m.msg.payload_type = KDBUS_PAYLOAD_DBUS;
  m.msg.dst_id = dst;
  m.msg.cookie = cookie++;
  m.vec.size = sizeof m.vec;
  m.vec.type = KDBUS_ITEM_PAYLOAD_VEC;
  m.vec.vec.address = (uintptr_t)payload;
  m.vec.vec.size = kind == 2 ? sizeof payload : 8;
  if (kind == 0) {
    m.fds.size = ITEM_HDR + sizeof(int);
    m.fds.type = KDBUS_ITEM_FDS;
    m.fds.fds[0] = fd;
  } else {
    m.memfd.size = sizeof m.memfd;
    m.memfd.type = KDBUS_ITEM_PAYLOAD_MEMFD;
    m.memfd.memfd.size = kind == 2 ? 16 : 4096;
    m.memfd.memfd.fd = fd;
  }
  m.msg.size = sizeof m.msg + sizeof m.vec + ALIGN8(m.fds.size);
  if (kind == 2) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    m.msg.flags = KDBUS_MSG_EXPECT_REPLY;
    m.msg.timeout_ns = now.tv_sec * 1000000000ULL + now.tv_nsec + 10000000000ULL;
  }
  struct kdbus_cmd_send s = { .size = sizeof s, .msg_address = (uintptr_t)&m.msg };
  if (ioctl(from->fd, KDBUS_CMD_SEND, &s) < 0) die("SEND: %m");
}

/* RECV one message, close the fds it brought, FREE it; returns the ns the
 * RECV ioctl took. */
static unsigned long long recv_one(struct conn *c) {
  struct kdbus_cmd_recv r = { .size = sizeof r };
  unsigned long long t0 = now_ns();
  if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) die("RECV: %m");
  unsigned long long spent = now_ns() - t0;
  struct kdbus_msg *m = (struct kdbus_msg *)(c->pool + r.msg.offset);
  for (struct kdbus_item *it = m->items; (uint8_t *)it < (uint8_t *)m + m->size;
       it = (struct kdbus_item *)((uint8_t *)it + ALIGN8(it->size))) {
    if (it->type == KDBUS_ITEM_FDS)
      for (uint64_t i = 0; i < (it->size - ITEM_HDR) / sizeof(int); i++) close(it->fds[i]);
    else if (it->type == KDBUS_ITEM_PAYLOAD_MEMFD)
      close(it->memfd.fd);
  }
  kfree(c, r.msg.offset);
  return spent;
}

/* Drops whatever c has queued (the REPLY_DEAD notifications of a round). */
static void drain(struct conn *c) {
  for (;;) {
    struct kdbus_cmd_recv r = { .size = sizeof r };
    if (ioctl(c->fd, KDBUS_CMD_RECV, &r) < 0) {
      if (errno == EAGAIN) return;
      die("RECV: %m");
    }
    kfree(c, r.msg.offset);
  }
}

int main(int argc, char **argv) {
  if (argc != 5) die("usage: fd-recv ROOT recv-fd|recv-memfd|send-memfd N REPS");
  root = argv[1];
  const char *mode = argv[2];
  int n = atoi(argv[3]), reps = atoi(argv[4]);
  int kind = !strcmp(mode, "recv-fd") ? 0 : !strcmp(mode, "recv-memfd") ? 1 : !strcmp(mode, "send-memfd") ? 2 : -1;
  if (kind < 0 || n <= 0 || reps <= 0) die("usage: fd-recv ROOT recv-fd|recv-memfd|send-memfd N REPS");
  char path[512];
  snprintf(path, sizeof path, "%s/control", root);
  int control_fd = open(path, O_RDWR | O_CLOEXEC);
  if (control_fd < 0) die("open %s: %m", path);
  make_bus(control_fd);
  if (kind == 2) attach_recv = _KDBUS_ATTACH_ALL;
  struct conn a, b;
  conn_open(&a);
  conn_open(&b);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) die("pipe: %m");
  int memfd = kind == 1 ? sealed_memfd(4096) : -1;
  for (int rep = -1; rep < reps; rep++) {
    unsigned long long spent = 0;
    for (int i = 0; i < n; i++) {
      if (kind == 2) {
        /* one round: 16 to each of 8 fresh receivers, left unread, as the selftest */
        struct conn r[8];
        for (int k = 0; k < 8; k++) conn_open(&r[k]);
        for (int k = 0; k < 128; k++) {
          int fd = sealed_memfd(1024 * 1024);
          unsigned long long t0 = now_ns();
          send_one(&a, r[k / 16].id, 2, fd);
          spent += now_ns() - t0;
          close(fd);
        }
        for (int k = 0; k < 8; k++) conn_close(&r[k]);
        drain(&a);
      } else {
        send_one(&a, b.id, kind, kind == 0 ? p[0] : memfd);
        spent += recv_one(&b);
      }
    }
    if (rep >= 0) {
      printf("%.1f\n", spent / 1e3 / n / (kind == 2 ? 128 : 1));
      fflush(stdout);
    }
  }
  return 0;
}
