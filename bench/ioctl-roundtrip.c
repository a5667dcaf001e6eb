// ioctl round-trip latency on a FUSE file: N ioctls in batches, printing the
// median over batches of the mean time per ioctl, in microseconds.
//
//   ioctl-roundtrip PATH [N [BATCH [recv]]]
//
// The command is KDBUS_CMD_BUS_MAKE (_IOW(0x95, 0, 32 bytes)) with size = 8,
// below the minimum: kdbusfs reads the command, its core validates it and
// answers EINVAL. A server that answers every ioctl at once returns 0.
//
// With "recv", PATH is a kdbusfs root: the client makes a bus, connects with
// HELLO and times KDBUS_CMD_RECV on its empty queue (EAGAIN), the ioctl a
// kdbus client issues most: a connected handle, the whole command read and
// checked, the queue looked at.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BUS_MAKE _IOW(0x95, 0x00, uint64_t[4])
#define HELLO _IOWR(0x95, 0x20, uint64_t[13])
#define RECV _IOWR(0x95, 0x31, uint64_t[9])

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

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH [N [BATCH]]\n", argv[0]);
    return 2;
  }
  long n = argc > 2 ? atol(argv[2]) : 20000, batch = argc > 3 ? atol(argv[3]) : 1000;
  if (n < batch || batch < 1) return 2;
  int recv = argc > 4 && strcmp(argv[4], "recv") == 0;
  int fd = recv ? connect_bus(argv[1]) : open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "%s %s: %s\n", recv ? "connecting under" : "open", argv[1], strerror(errno));
    return 1;
  }
  unsigned long req = recv ? RECV : BUS_MAKE;
  uint64_t cmd[9] __attribute__((aligned(8))) = {recv ? sizeof cmd : 8};
  int first = ioctl(fd, req, cmd) < 0 ? errno : 0;
  for (long i = 0; i < batch; i++) ioctl(fd, req, cmd);  // warm-up
  long batches = n / batch;
  double *per = calloc(batches, sizeof *per);
  for (long b = 0; b < batches; b++) {
    double t0 = now_us();
    for (long i = 0; i < batch; i++) {
      int e = ioctl(fd, req, cmd) < 0 ? errno : 0;
      if (e != first) {
        fprintf(stderr, "ioctl answer changed: %s -> %s\n", strerror(first), strerror(e));
        return 1;
      }
    }
    per[b] = (now_us() - t0) / batch;
  }
  qsort(per, batches, sizeof *per, cmp);
  printf("%.2f us per ioctl (median of %ld batches of %ld; answer: %s)\n", per[batches / 2], batches,
         batch, first ? strerrorname_np(first) : "0");
  return 0;
}
