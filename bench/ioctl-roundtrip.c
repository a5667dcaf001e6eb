// ioctl round-trip latency on a FUSE file: N ioctls in batches, printing the
// median over batches of the mean time per ioctl, in microseconds.
//
//   ioctl-roundtrip PATH [N [BATCH]]
//
// The command is KDBUS_CMD_BUS_MAKE (_IOW(0x95, 0, 32 bytes)) with size = 8,
// below the minimum: kdbusfs reads the command, its core validates it and
// answers EINVAL. A server that answers every ioctl at once returns 0.
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
  int fd = open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  uint64_t cmd[4] __attribute__((aligned(8))) = {8, 0, 0, 0};
  int first = ioctl(fd, BUS_MAKE, cmd) < 0 ? errno : 0;
  for (long i = 0; i < batch; i++) ioctl(fd, BUS_MAKE, cmd);  // warm-up
  long batches = n / batch;
  double *per = calloc(batches, sizeof *per);
  for (long b = 0; b < batches; b++) {
    double t0 = now_us();
    for (long i = 0; i < batch; i++) {
      int e = ioctl(fd, BUS_MAKE, cmd) < 0 ? errno : 0;
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
