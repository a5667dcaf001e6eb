/*
 * The floor of the benchmark suite: a unix socketpair ping-pong.
 *
 *   socketpair-bench call SIZE SECONDS REPS   us per round trip (SIZE bytes
 *       written by the client, read by the server, written back, read)
 *   socketpair-bench connect SECONDS REPS     us per unix stream connection
 *       (socket, connect to a listener, accept, close both; one process)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static void xfer(int fd, uint8_t *buf, size_t size, int out) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = out ? write(fd, buf + done, size - done) : read(fd, buf + done, size - done);
    if (n <= 0) die("%s: %m", out ? "write" : "read");
    done += n;
  }
}

static void bench_call(size_t size, double seconds, int reps) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair: %m");
  uint8_t *buf = malloc(size);
  memset(buf, 0xa5, size);
  pid_t pid = fork();
  if (pid < 0) die("fork: %m");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(sv[0]);
    for (;;) {
      xfer(sv[1], buf, size, 0);
      xfer(sv[1], buf, size, 1);
    }
  }
  close(sv[1]);
  RUN_REPS(seconds, reps, 10, 1, 1, {
    xfer(sv[0], buf, size, 1);
    xfer(sv[0], buf, size, 0);
  });
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

static void bench_connect(double seconds, int reps) {
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof sa.sun_path, "/tmp/kdbusfs-bench-floor-%d.sock", getpid());
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  unlink(sa.sun_path);
  if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 64) < 0) die("listen: %m");
  RUN_REPS(seconds, reps, 10, 1, 1, {
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect: %m");
    int a = accept(l, NULL, NULL);
    if (a < 0) die("accept: %m");
    close(a);
    close(c);
  });
  unlink(sa.sun_path);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 5 && !strcmp(argv[1], "call"))
    bench_call(strtoull(argv[2], NULL, 0), atof(argv[3]), atoi(argv[4]));
  else if (argc == 4 && !strcmp(argv[1], "connect"))
    bench_connect(atof(argv[2]), atoi(argv[3]));
  else
    die("usage: socketpair-bench call SIZE SECONDS REPS | connect SECONDS REPS");
  return 0;
}
