// hostile-resources: test/hostile-resources.test.ts's kdbus client, as
// victim or attacker (issue #17, attacks 2 and 3), driven like kdbus-peer
// (test/harness.ts Peer): one line when ready, then one command per line on
// stdin, each answered with one line, "ok key=value ..." or "err ENAME ...".
// Written against the kdbus ABI only (include/kdbus-abi.h).
//
// Commands:
//   setuid UID            drop to UID (gid UID too), before conns
//   conns BUS N POOL      N connections to BUS in this process (HELLO with
//                         ACCEPT_FD, pools of POOL bytes, mmap): conns[0]
//                         sends, conns[1..N-1] receive; answer first=ID
//                         (conns[0]'s id) n=N
//   serve                 conns[0] answers every call, from a thread
//   calls DST N RATE MS   N synchronous 8-byte calls from conns[0] to DST,
//                         one every 1/RATE s (timeout MS each):
//                         test/clients/victim.h
//   fdfile PATH           the fd that fill and pass send: PATH opened
//                         read-only (default /dev/null)
//   fill SIZE NFDS PER    conns[0] sends to each of conns[1..] up to PER
//                         messages of one SIZE-byte vector and NFDS copies
//                         of the fd, which conns[1..] never receive; a
//                         receiver's first refusal ends its turn. Answer
//                         sent=N refused=N errs=ENAME:COUNT,... ms=
//   pass [NFDS]           conns[0] sends a message with the fd (NFDS copies,
//                         default 1) to conns[1], which receives it and
//                         closes what it got from a thread of its own (a
//                         close whose FLUSH never returns parks only that
//                         thread); answer errno= ms= (of the RECV) fds=N
//   fdmsgs N              N times: a message with one fd (/dev/null) from
//                         conns[0] to conns[1], received there and closed;
//                         answer done=N failed=N err=ENAME max_ms= (RECVs)
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
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"
#include "victim.h"

#define MAX_CONNS 1024

static struct conn conns[MAX_CONNS];
static int nconns;
static int fd_to_send = -1;
static pthread_t serve_thread;

static void cmd_conns(const char *bus, int n, uint64_t pool) {
  if (n < 1 || nconns + n > MAX_CONNS) return answer("err EINVAL conns");
  int first = nconns;
  for (int i = 0; i < n; i++) {
    struct conn *c = &conns[nconns];
    *c = (struct conn)CONN_INIT;
    int e = conn_open(c, bus, pool);
    if (e) return answer("err %s hello %d", ename(e), nconns);
    nconns++;
  }
  answer("ok first=%" PRIu64 " n=%d", conns[first].id, nconns);
}

struct errs {
  int err[8];
  long count[8];
  int n;
};

static void count_err(struct errs *es, int e) {
  for (int i = 0; i < es->n; i++)
    if (es->err[i] == e) {
      es->count[i]++;
      return;
    }
  if (es->n == 8) return;
  es->err[es->n] = e;
  es->count[es->n++] = 1;
}

static void cmd_fill(uint64_t size, int nfds, long per) {
  if (nconns < 2) return answer("err EINVAL fill needs a receiver");
  uint8_t *data = malloc(size ? size : 8);
  memset(data, 0x5a, size ? size : 8);
  struct errs es = { .n = 0 };
  long sent = 0, refused = 0;
  int64_t a = now_ns();
  for (int r = 1; r < nconns; r++) {
    for (long k = 0; k < per; k++) {
      int e = send_fds(&conns[0], conns[r].id, data, size ? size : 8, fd_to_send, nfds);
      if (!e) {
        sent++;
        continue;
      }
      refused++;
      count_err(&es, e);
      break;
    }
  }
  free(data);
  char list[256] = "-";
  size_t n = 0;
  for (int i = 0; i < es.n && n < sizeof(list); i++)
    n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s:%ld", i ? "," : "", ename(es.err[i]), es.count[i]);
  answer("ok sent=%ld refused=%ld errs=%s ms=%.1f", sent, refused, list, (double)(now_ns() - a) / 1e6);
}

static void *close_main(void *arg) {
  close((int)(intptr_t)arg);
  return NULL;
}

// Closes fd from a detached thread of its own.
static int close_in_thread(int fd) {
  pthread_t th;
  if (pthread_create(&th, NULL, close_main, (void *)(intptr_t)fd)) return close(fd);
  return pthread_detach(th);
}

// conns[0] -> conns[1]: a message with nfds copies of fd, received; the RECV's errno and time, the fds got.
static int pass_fd(int fd, int nfds, int (*done)(int), int64_t *ns, int *got) {
  uint64_t payload = 1;
  int e = send_fds(&conns[0], conns[1].id, &payload, sizeof(payload), fd, nfds);
  if (e) return e;
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  int64_t a = now_ns();
  e = ioctl(conns[1].fd, KDBUS_CMD_RECV, &r) < 0 ? errno : 0;
  *ns = now_ns() - a;
  *got = e ? 0 : take_fds(&conns[1], r.msg.offset, done);
  return e;
}

static void cmd_pass(int nfds) {
  int64_t ns = 0;
  int got = 0;
  int e = pass_fd(fd_to_send, nfds, close_in_thread, &ns, &got);
  answer("ok errno=%s ms=%.1f fds=%d", e ? ename(e) : "-", (double)ns / 1e6, got);
}

static void cmd_fdmsgs(long n) {
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  long failed = 0;
  int first_err = 0;
  int64_t max = 0;
  for (long k = 0; k < n; k++) {
    int64_t ns = 0;
    int got = 0;
    int e = pass_fd(devnull, 1, close, &ns, &got);
    if (!e && got != 1) e = EBADMSG;
    if (ns > max) max = ns;
    if (e) {
      failed++;
      if (!first_err) first_err = e;
    }
  }
  close(devnull);
  answer("ok done=%ld failed=%ld err=%s max_ms=%.2f", n - failed, failed, first_err ? ename(first_err) : "-",
         (double)max / 1e6);
}

int main(void) {
  fd_to_send = open("/dev/null", O_RDONLY | O_CLOEXEC);
  answer("ok ready");
  char *av[8];
  int ac;
  while ((ac = next_command(av, 8)) >= 0) {
    if (!ac) continue;
    const char *c = av[0];
    if (!strcmp(c, "setuid") && ac == 2) {
      cmd_drop_to(av[1]);
    } else if (!strcmp(c, "conns") && ac == 4) {
      cmd_conns(av[1], atoi(av[2]), strtoull(av[3], NULL, 0));
    } else if (!strcmp(c, "fdfile") && ac == 2) {
      int fd = open(av[1], O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        answer("err %s open", ename(errno));
      } else {
        fd_to_send = fd;  // the one before stays open: closing a file of a stuck mount could hang
        answer("ok");
      }
    } else if (!strcmp(c, "exit")) {
      answer("ok");
      return 0;
    } else if (nconns == 0) {
      answer("err ENOTCONN no connections");
    } else if (!strcmp(c, "serve")) {
      if (pthread_create(&serve_thread, NULL, serve_calls, &conns[0])) answer("err EAGAIN thread");
      else answer("ok");
    } else if (!strcmp(c, "calls") && ac == 5) {
      victim_calls(&conns[0], strtoull(av[1], NULL, 0), atol(av[2]), atof(av[3]), atoi(av[4]));
    } else if (!strcmp(c, "fill") && ac == 4) {
      cmd_fill(strtoull(av[1], NULL, 0), atoi(av[2]), atol(av[3]));
    } else if (nconns < 2) {
      answer("err EINVAL needs two connections");
    } else if (!strcmp(c, "pass") && ac <= 2) {
      cmd_pass(ac == 2 ? atoi(av[1]) : 1);
    } else if (!strcmp(c, "fdmsgs") && ac == 2) {
      cmd_fdmsgs(atol(av[1]));
    } else {
      answer("err EINVAL unknown command %s", c);
    }
  }
  return 0;
}
