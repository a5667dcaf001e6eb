// ioctl round-trip latency on a FUSE file: N ioctls in batches, printing the
// median over batches of the mean time per ioctl, in microseconds.
//
//   ioctl-roundtrip PATH [N [BATCH [recv|poll|free|recv-fresh|free-fresh]]]
//
// The command is KDBUS_CMD_BUS_MAKE (_IOW(0x95, 0, 32 bytes)) with size = 8,
// below the minimum: kdbusfs reads the command, its core validates it and
// answers EINVAL. A server that answers every ioctl at once returns 0.
//
// With "recv", PATH is a kdbusfs root: the client makes a bus, connects with
// HELLO and times KDBUS_CMD_RECV on its empty queue (EAGAIN), the ioctl a
// kdbus client issues most: a connected handle, the whole command read and
// checked, the queue looked at. "poll" times poll(2) for POLLIN with timeout
// 0 on that connection (one FUSE_POLL each, nothing queued). "free" times
// KDBUS_CMD_FREE of real slices: before each batch (not timed) as many
// KDBUS_CMD_NAME_LISTs put a list each into the pool, then each is freed.
// RECV and FREE reuse one command struct, so kdbus's write-back of
// kernel_flags finds it in place after the first call; "recv-fresh" and
// "free-fresh" build the struct anew each call (as sd-bus does), so that
// write-back is made each time.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

#define BUS_MAKE _IOW(0x95, 0x00, uint64_t[4])
#define HELLO _IOWR(0x95, 0x20, uint64_t[13])
#define RECV _IOWR(0x95, 0x31, uint64_t[9])
#define FREE _IOW(0x95, 0x32, uint64_t[5])
#define NAME_LIST _IOWR(0x95, 0x42, uint64_t[6])
#define NAME_LIST_UNIQUE 1

// kdbus item types and flags used below (the kdbus ABI, include/kdbus-abi.h)
enum { ITEM_BLOOM_PARAMETER = 6, ITEM_MAKE_NAME = 10 };
#define MAKE_ACCESS_WORLD 2

// Makes a bus under root and connects to it; returns the connection fd.
static int connect_bus(const char *root) {
  char path[4096], name[64];
  snprintf(name, sizeof name, "%u-bench-%d", (unsigned)geteuid(), (int)getpid());
  snprintf(path, sizeof path, "%s/control", root);
  int control = open(path, O_RDWR | O_CLOEXEC);
  if (control < 0) return -1;
  uint64_t make[32] __attribute__((aligned(8))) = {0};
  uint64_t *it = make + 4;
  it[0] = 32, it[1] = ITEM_BLOOM_PARAMETER, it[2] = 64, it[3] = 1;  // bloom size, n_hash
  it += 4;
  size_t len = strlen(name) + 1;
  it[0] = 16 + len, it[1] = ITEM_MAKE_NAME;
  memcpy(it + 2, name, len);
  it += 2 + (len + 7) / 8;
  make[0] = (uint8_t *)it - (uint8_t *)make;
  make[1] = MAKE_ACCESS_WORLD;
  if (ioctl(control, BUS_MAKE, make) < 0) return -1;  // control stays open: it keeps the bus
  snprintf(path, sizeof path, "%s/%s/bus", root, name);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  uint64_t hello[13] __attribute__((aligned(8))) = {0};
  hello[0] = sizeof hello;
  hello[8] = 1 << 20;  // pool_size
  if (ioctl(fd, HELLO, hello) < 0) return -1;
  return fd;
}

enum Mode { MODE_BUS_MAKE, MODE_RECV, MODE_POLL, MODE_FREE };

static int fd;
static enum Mode mode;
static uint64_t *offsets;  // MODE_FREE: the slices of the batch
static int fresh;          // the command struct is built anew for each call

// One timed operation: 0 or an errno (poll: its revents).
static int op(long i) {
  if (mode == MODE_POLL) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) < 0 ? errno : p.revents;
  }
  static uint64_t cmd[9] __attribute__((aligned(8)));
  if (fresh) memset(cmd, 0, sizeof cmd);
  if (mode == MODE_FREE) {
    cmd[0] = 5 * 8, cmd[1] = offsets[i];
    return ioctl(fd, FREE, cmd) < 0 ? errno : 0;
  }
  cmd[0] = mode == MODE_RECV ? sizeof cmd : 8;
  return ioctl(fd, mode == MODE_RECV ? RECV : BUS_MAKE, cmd) < 0 ? errno : 0;
}

// MODE_FREE, before a batch: n slices to free.
static int fill(long n) {
  for (long i = 0; i < n; i++) {
    uint64_t cmd[6] __attribute__((aligned(8))) = {sizeof cmd, NAME_LIST_UNIQUE};
    if (ioctl(fd, NAME_LIST, cmd) < 0) return errno;
    offsets[i] = cmd[4];
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH [N [BATCH [recv|poll|free][-fresh]]]\n", argv[0]);
    return 2;
  }
  long n = argc > 2 ? atol(argv[2]) : 20000, batch = argc > 3 ? atol(argv[3]) : 1000;
  if (n < batch || batch < 1) return 2;
  char m[32] = "";
  if (argc > 4) snprintf(m, sizeof m, "%s", argv[4]);
  char *dash = strstr(m, "-fresh");
  if (dash) *dash = 0, fresh = 1;
  mode = !strcmp(m, "recv") ? MODE_RECV : !strcmp(m, "poll") ? MODE_POLL : !strcmp(m, "free") ? MODE_FREE
                                                                                             : MODE_BUS_MAKE;
  fd = mode != MODE_BUS_MAKE ? connect_bus(argv[1]) : open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "%s %s: %s\n", mode != MODE_BUS_MAKE ? "connecting under" : "open", argv[1], strerror(errno));
    return 1;
  }
  offsets = calloc(batch, sizeof *offsets);
  int e = mode == MODE_FREE ? fill(batch) : 0;
  int first = e ? e : op(0);
  for (long i = 1; i < batch && !e; i++) op(i);  // warm-up
  long batches = n / batch;
  double *per = calloc(batches, sizeof *per);
  for (long b = 0; b < batches; b++) {
    if (mode == MODE_FREE && (e = fill(batch)) != 0) {
      fprintf(stderr, "NAME_LIST: %s\n", strerror(e));
      return 1;
    }
    double t0 = now_us();
    for (long i = 0; i < batch; i++) {
      int e = op(i);
      if (e != first) {
        fprintf(stderr, "answer changed: %d -> %d\n", first, e);
        return 1;
      }
    }
    per[b] = (now_us() - t0) / batch;
  }
  qsort(per, batches, sizeof *per, cmp_double);
  printf("%.2f us per %s (median of %ld batches of %ld; answer: %s)\n", per[batches / 2],
         mode == MODE_POLL ? "poll" : "ioctl", batches, batch,
         mode == MODE_POLL ? (first ? "ready" : "0") : first ? strerrorname_np(first) : "0");
  return 0;
}
