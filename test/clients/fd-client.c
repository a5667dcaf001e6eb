// fd passing scenarios against a kdbusfs mount (test/fd-passing.test.ts),
// written against kdbus.h only: KDBUS_ITEM_FDS and KDBUS_ITEM_PAYLOAD_MEMFD
// as a kdbus client sees them.
//
//   fd-client ROOT SCENARIO
//
// Each scenario makes its own bus under ROOT and prints, line by line:
//   check NAME 0|1 DETAIL      one assertion (1: holds)
//   value NAME NUMBER          a measurement
//   done                       the scenario ran to its end
// Scenarios: basic peek thread unpriv traced seccomp sync incomplete storm
// timing churn.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"

#define ALL_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

#define POOL (4u << 20)
#define NOBODY 65534

static const char *root;
static char bus_path[512];
static int ctl_fd = -1;

static void check(const char *name, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(const char *name, int ok, const char *fmt, ...) {
  char detail[512] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  printf("check %s %d %s\n", name, ok ? 1 : 0, detail);
  fflush(stdout);
}

static void value(const char *name, double v) {
  printf("value %s %.1f\n", name, v);
  fflush(stdout);
}

static void die(const char *what) {
  printf("check fatal 0 %s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

// ---- bus, connections, messages ----

struct conn {
  int fd;
  uint64_t id;
  uint8_t *pool;
};

static struct kdbus_item *item_put(struct kdbus_item *it, uint64_t type, const void *data, size_t len) {
  it->size = ITEM_HDR + len;
  it->type = type;
  if (data) memcpy(it->data, data, len);
  return ITEM_NEXT(it);
}

static void make_bus(const char *scenario) {
  char name[128], control[512];
  snprintf(name, sizeof name, "%u-fd-%s-%d", (unsigned)geteuid(), scenario, (int)getpid());
  snprintf(control, sizeof control, "%s/control", root);
  struct kdbus_bloom_parameter bp = {8, 1};
  size_t nlen = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_make) + ALIGN8(ITEM_HDR + sizeof bp) + ALIGN8(ITEM_HDR + nlen);
  struct kdbus_cmd_make *cmd = calloc(1, size);
  cmd->size = size;
  cmd->flags = KDBUS_MAKE_ACCESS_WORLD;
  item_put(item_put(cmd->items, KDBUS_ITEM_BLOOM_PARAMETER, &bp, sizeof bp), KDBUS_ITEM_MAKE_NAME, name, nlen);
  ctl_fd = open(control, O_RDWR | O_CLOEXEC);
  if (ctl_fd < 0 || ioctl(ctl_fd, KDBUS_CMD_BUS_MAKE, cmd) < 0) die("BUS_MAKE");
  free(cmd);
  snprintf(bus_path, sizeof bus_path, "%s/%s/bus", root, name);
}

static struct conn hello(uint64_t flags) {
  struct conn c = {-1, 0, NULL};
  c.fd = open(bus_path, O_RDWR | O_CLOEXEC);
  if (c.fd < 0) die("open bus");
  struct kdbus_cmd_hello h;
  memset(&h, 0, sizeof h);
  h.size = sizeof h;
  h.flags = flags;
  h.attach_flags_send = _KDBUS_ATTACH_ANY;
  h.attach_flags_recv = KDBUS_ATTACH_TIMESTAMP | KDBUS_ATTACH_CREDS;
  h.pool_size = POOL;
  if (ioctl(c.fd, KDBUS_CMD_HELLO, &h) < 0) die("HELLO");
  c.id = h.id;
  c.pool = mmap(NULL, POOL, PROT_READ, MAP_SHARED, c.fd, 0);
  if (c.pool == MAP_FAILED) die("mmap pool");
  struct kdbus_cmd_free f = {.size = sizeof f, .offset = h.offset};
  ioctl(c.fd, KDBUS_CMD_FREE, &f);
  return c;
}

// SEND to dst: a vector (text, if any), memfds, then an FDS item. 0 or errno.
static int send_msg(struct conn *c, uint64_t dst, uint64_t cookie, const char *text, const int *memfds, int nmem,
                    const int *fds, int nfds, uint64_t flags, uint64_t cookie_reply, uint64_t send_flags,
                    struct kdbus_cmd_send *out) {
  size_t size = sizeof(struct kdbus_msg);
  if (text) size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_vec));
  size += (size_t)nmem * ALIGN8(ITEM_HDR + sizeof(struct kdbus_memfd));
  if (nfds) size += ALIGN8(ITEM_HDR + sizeof(int) * (size_t)nfds);
  struct kdbus_msg *m = calloc(1, size);
  m->size = size;
  m->flags = flags;
  m->dst_id = dst;
  m->src_id = c->id;
  m->payload_type = KDBUS_PAYLOAD_DBUS;
  m->cookie = cookie;
  if (flags & KDBUS_MSG_EXPECT_REPLY)
    m->timeout_ns = (uint64_t)now_ns() + 5000000000ULL;
  else
    m->cookie_reply = cookie_reply;
  struct kdbus_item *it = m->items;
  if (text) {
    struct kdbus_vec v = {.size = strlen(text), .address = (uintptr_t)text};
    it = item_put(it, KDBUS_ITEM_PAYLOAD_VEC, &v, sizeof v);
  }
  for (int i = 0; i < nmem; i++) {
    struct stat st;
    fstat(memfds[i], &st);
    struct kdbus_memfd mf = {.start = 0, .size = (uint64_t)st.st_size, .fd = memfds[i]};
    it = item_put(it, KDBUS_ITEM_PAYLOAD_MEMFD, &mf, sizeof mf);
  }
  if (nfds) item_put(it, KDBUS_ITEM_FDS, fds, sizeof(int) * (size_t)nfds);
  struct kdbus_cmd_send cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.size = sizeof cmd;
  cmd.flags = send_flags;
  cmd.msg_address = (uintptr_t)m;
  int r = ioctl(c->fd, KDBUS_CMD_SEND, &cmd) < 0 ? errno : 0;
  if (out) *out = cmd;
  free(m);
  return r;
}

static int send_fds(struct conn *c, uint64_t dst, const int *fds, int nfds) {
  return send_msg(c, dst, 1, NULL, NULL, 0, fds, nfds, 0, 0, 0, NULL);
}

// RECV with flags: 0 or errno; *msg points into the pool, *cmd is the command.
static int recv_msg(struct conn *c, uint64_t flags, struct kdbus_msg **msg, struct kdbus_cmd_recv *cmd) {
  memset(cmd, 0, sizeof *cmd);
  cmd->size = sizeof *cmd;
  cmd->flags = flags;
  if (ioctl(c->fd, KDBUS_CMD_RECV, cmd) < 0) return errno;
  if (msg) *msg = (struct kdbus_msg *)(c->pool + cmd->msg.offset);
  return 0;
}

static void free_msg(struct conn *c, uint64_t off) {
  struct kdbus_cmd_free f = {.size = sizeof f, .offset = off};
  ioctl(c->fd, KDBUS_CMD_FREE, &f);
}

// What a received message carries: item types in order, memfd and fds numbers.
struct got {
  uint64_t types[64];
  int ntypes;
  int memfd[16];
  int nmem;
  int fds[300];
  int nfds;
  char text[256];
};

static void parse(struct conn *c, struct kdbus_msg *m, struct got *g) {
  memset(g, 0, sizeof *g);
  for (struct kdbus_item *it = m->items; (uint8_t *)it < (uint8_t *)m + m->size; it = ITEM_NEXT(it)) {
    if (g->ntypes < 64) g->types[g->ntypes++] = it->type;
    if (it->type == KDBUS_ITEM_PAYLOAD_MEMFD && g->nmem < 16) g->memfd[g->nmem++] = it->memfd.fd;
    if (it->type == KDBUS_ITEM_FDS) {
      g->nfds = (int)((it->size - ITEM_HDR) / sizeof(int));
      memcpy(g->fds, it->fds, sizeof(int) * (size_t)g->nfds);
    }
    if (it->type == KDBUS_ITEM_PAYLOAD_OFF && it->vec.offset != ~0ULL && it->vec.size < sizeof g->text)
      memcpy(g->text, c->pool + it->vec.offset, it->vec.size);
  }
}

// The lowest n fd numbers free in this process.
static void lowest_free(int *out, int n) {
  int k = 0;
  for (int fd = 0; k < n; fd++)
    if (fcntl(fd, F_GETFD) < 0) out[k++] = fd;
}

static int open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 4096; fd++)
    if (fcntl(fd, F_GETFD) >= 0) n++;
  return n;
}

static int same_file(int a, int b) {
  struct stat sa, sb;
  if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0) return 0;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int cloexec(int fd) {
  int f = fcntl(fd, F_GETFD);
  return f >= 0 && (f & FD_CLOEXEC);
}

static int make_memfd(const char *content) {
  int fd = memfd_create("fd-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || write(fd, content, strlen(content)) != (ssize_t)strlen(content)) die("memfd");
  if (fcntl(fd, F_ADD_SEALS, ALL_SEALS) < 0) die("seal");
  return fd;
}

// A pipe whose read end gets passed: data written, write end closed.
static int pipe_with(const char *data) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) die("pipe");
  if (write(p[1], data, strlen(data)) != (ssize_t)strlen(data)) die("pipe write");
  close(p[1]);
  return p[0];
}

static int read_all(int fd, char *buf, size_t n) {
  ssize_t r = read(fd, buf, n - 1);
  buf[r > 0 ? r : 0] = 0;
  return (int)r;
}

// ---- scenarios ----

// memfd + three fds (pipe, regular file, O_PATH) and a vector: numbers, order,
// O_CLOEXEC, identity, contents; then the refusals kdbus makes at SEND.
static void basic(void) {
  make_bus("basic");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD), n = hello(0);
  int memfd = make_memfd("memfd-content");
  int pipe_rd = pipe_with("through-a-pipe");
  int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  int path = open("/", O_PATH | O_CLOEXEC);
  int fds[3] = {pipe_rd, file, path};
  struct stat sent[4];
  fstat(memfd, &sent[0]);
  for (int i = 0; i < 3; i++) fstat(fds[i], &sent[i + 1]);
  int e = send_msg(&s, r.id, 7, "hello", &memfd, 1, fds, 3, 0, 0, 0, NULL);
  check("send", e == 0, "SEND with a memfd and 3 fds: %s", e ? ename(e) : "ok");
  close(pipe_rd);
  close(memfd);
  int want[4];
  lowest_free(want, 4);
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  e = recv_msg(&r, 0, &m, &cmd);
  check("recv", e == 0, "RECV: %s", e ? ename(e) : "ok");
  if (e) return;
  struct got g;
  parse(&r, m, &g);
  check("return-flags", cmd.msg.return_flags == 0, "msg.return_flags %llu", (unsigned long long)cmd.msg.return_flags);
  check("text", !strcmp(g.text, "hello"), "vector '%s'", g.text);
  // kdbus_msg_make_items: payload items in message order, then FDS, then metadata
  int order = g.ntypes >= 3 && g.types[0] == KDBUS_ITEM_PAYLOAD_OFF && g.types[1] == KDBUS_ITEM_PAYLOAD_MEMFD &&
              g.types[2] == KDBUS_ITEM_FDS;
  for (int i = 3; i < g.ntypes; i++) order = order && g.types[i] >= _KDBUS_ITEM_ATTACH_BASE;
  check("item-order", order, "types %llx %llx %llx, %d items", (unsigned long long)g.types[0],
        (unsigned long long)g.types[1], (unsigned long long)g.types[2], g.ntypes);
  check("counts", g.nmem == 1 && g.nfds == 3, "%d memfd, %d fds", g.nmem, g.nfds);
  int got[4] = {g.memfd[0], g.fds[0], g.fds[1], g.fds[2]};
  check("lowest-free", got[0] == want[0] && got[1] == want[1] && got[2] == want[2] && got[3] == want[3],
        "got %d %d %d %d, lowest free were %d %d %d %d", got[0], got[1], got[2], got[3], want[0], want[1], want[2],
        want[3]);
  int cx = 1, same = 1;
  for (int i = 0; i < 4; i++) {
    cx = cx && cloexec(got[i]);
    struct stat st;
    same = same && fstat(got[i], &st) == 0 && st.st_dev == sent[i].st_dev && st.st_ino == sent[i].st_ino;
  }
  check("cloexec", cx, "FD_CLOEXEC on every installed fd");
  check("same-files", same, "st_dev/st_ino of the 4 received fds are those sent");
  char buf[64];
  read_all(got[1], buf, sizeof buf);
  check("pipe-data", !strcmp(buf, "through-a-pipe"), "read '%s' through the received pipe", buf);
  check("o-path", (fcntl(got[3], F_GETFL) & O_PATH) != 0, "the O_PATH fd arrives O_PATH");
  char mbuf[64] = "";
  ssize_t mr = pread(got[0], mbuf, sizeof mbuf - 1, 0);
  if (mr > 0) mbuf[mr] = 0;
  check("memfd", fcntl(got[0], F_GET_SEALS) == ALL_SEALS && !strcmp(mbuf, "memfd-content"),
        "a sealed memfd, '%s'", mbuf);
  free_msg(&r, cmd.msg.offset);
  for (int i = 0; i < 4; i++) close(got[i]);

  // refusals at SEND (kdbus_msg_scan_items, kdbus_conn_entry_make)
  int sp[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
  check("kdbus-handle", send_fds(&s, r.id, &r.fd, 1) == EOPNOTSUPP, "a kdbus handle is EOPNOTSUPP");
  check("unix-socket", send_fds(&s, r.id, sp, 1) == EOPNOTSUPP, "an AF_UNIX socket is EOPNOTSUPP");
  int closed = 1000;
  check("bad-fd", send_fds(&s, r.id, &closed, 1) == EBADF, "an fd not open is EBADF");
  check("no-accept", send_fds(&s, n.id, &file, 1) == ECOMM, "a receiver without ACCEPT_FD is ECOMM");
  int memonly = make_memfd("to-no-accept");
  check("memfd-no-accept", send_msg(&s, n.id, 8, NULL, &memonly, 1, NULL, 0, 0, 0, 0, NULL) == 0,
        "memfds go to receivers without ACCEPT_FD");
  e = recv_msg(&n, 0, &m, &cmd);
  parse(&n, m, &g);
  check("memfd-no-accept-recv", e == 0 && g.nmem == 1 && g.memfd[0] >= 0 && fcntl(g.memfd[0], F_GET_SEALS) == ALL_SEALS,
        "and are installed there: %s fd %d", e ? ename(e) : "ok", g.memfd[0]);
  if (!e) {
    close(g.memfd[0]);
    free_msg(&n, cmd.msg.offset);
  }
  int many[254];
  for (int i = 0; i < 254; i++) many[i] = file;
  check("emfile", send_fds(&s, r.id, many, 254) == EMFILE, "254 fds are EMFILE");
  check("broadcast", send_msg(&s, KDBUS_DST_ID_BROADCAST, 9, NULL, NULL, 0, &file, 1, KDBUS_MSG_SIGNAL, 0, 0, NULL) ==
        ENOTUNIQ, "fds on a broadcast are ENOTUNIQ");
  close(sp[0]);
  close(sp[1]);
}

// PEEK installs nothing (-1 everywhere); the RECV after it installs.
static void peek(void) {
  make_bus("peek");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  int memfd = make_memfd("peeked");
  int p = pipe_with("x");
  int fds[2] = {p, p};
  check("send", send_msg(&s, r.id, 1, NULL, &memfd, 1, fds, 2, 0, 0, 0, NULL) == 0, "SEND");
  int before = open_fds();
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  struct got g;
  int e = recv_msg(&r, KDBUS_RECV_PEEK, &m, &cmd);
  parse(&r, m, &g);
  check("peek", e == 0 && g.nmem == 1 && g.memfd[0] == -1 && g.nfds == 2 && g.fds[0] == -1 && g.fds[1] == -1,
        "PEEK: %s, memfd %d, fds %d %d", e ? ename(e) : "ok", g.memfd[0], g.fds[0], g.fds[1]);
  check("peek-installs-nothing", open_fds() == before && cmd.msg.return_flags == 0, "%d fds open, %d before",
        open_fds(), before);
  free_msg(&r, cmd.msg.offset);
  e = recv_msg(&r, 0, &m, &cmd);
  parse(&r, m, &g);
  check("recv-after-peek", e == 0 && g.memfd[0] >= 0 && same_file(g.fds[0], p) && same_file(g.fds[1], p) &&
        g.fds[0] != g.fds[1], "RECV: fds %d %d (two fds for the same file twice)", g.fds[0], g.fds[1]);
  check("queue-empty", recv_msg(&r, 0, NULL, &cmd) == EAGAIN, "nothing left");
}

struct thread_arg {
  struct conn *c;
  int want[2];
  struct got g;
  int err;
  pid_t tid;
};

static void *recv_thread(void *p) {
  struct thread_arg *a = p;
  a->tid = (pid_t)syscall(SYS_gettid);
  struct pollfd pf = {a->c->fd, POLLIN, 0};
  poll(&pf, 1, 5000);
  lowest_free(a->want, 2);
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  a->err = recv_msg(a->c, 0, &m, &cmd);
  if (!a->err) parse(a->c, m, &a->g);
  return NULL;
}

// The receiving thread is not the main thread.
static void thread(void) {
  make_bus("thread");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  struct thread_arg a = {.c = &r};
  pthread_t th;
  pthread_create(&th, NULL, recv_thread, &a);
  usleep(50000);
  int p1 = pipe_with("one"), p2 = pipe_with("two");
  int fds[2] = {p1, p2};
  check("send", send_fds(&s, r.id, fds, 2) == 0, "SEND");
  pthread_join(th, NULL);
  check("not-main", a.tid != getpid(), "receiving thread %d, process %d", a.tid, getpid());
  check("recv", a.err == 0 && a.g.nfds == 2, "RECV in the thread: %s", a.err ? ename(a.err) : "ok");
  if (a.err) return;
  char b1[16], b2[16];
  read_all(a.g.fds[0], b1, sizeof b1);
  read_all(a.g.fds[1], b2, sizeof b2);
  check("data", !strcmp(b1, "one") && !strcmp(b2, "two"), "read '%s' '%s'", b1, b2);
  check("lowest-free", a.g.fds[0] == a.want[0] && a.g.fds[1] == a.want[1], "got %d %d, lowest free %d %d",
        a.g.fds[0], a.g.fds[1], a.want[0], a.want[1]);
}

// A receiver that dropped to uid 65534 before connecting.
static void unpriv(void) {
  make_bus("unpriv");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD);
  int idpipe[2], out[2];
  if (pipe(idpipe) < 0 || pipe(out) < 0) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(idpipe[0]);
    if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
      _exit(2);
    struct conn r = hello(KDBUS_HELLO_ACCEPT_FD);
    if (write(idpipe[1], &r.id, sizeof r.id) != sizeof r.id) _exit(3);
    struct pollfd pf = {r.fd, POLLIN, 0};
    poll(&pf, 1, 5000);
    struct kdbus_msg *m = NULL;
    struct kdbus_cmd_recv cmd;
    struct got g;
    int e = recv_msg(&r, 0, &m, &cmd);
    char buf[64] = "";
    if (!e) {
      parse(&r, m, &g);
      read_all(g.fds[0], buf, sizeof buf);
    }
    check("recv", e == 0, "RECV as uid %u: %s", (unsigned)getuid(), e ? ename(e) : "ok");
    check("data", !strcmp(buf, "for-nobody"), "read '%s'", buf);
    _exit(0);
  }
  close(idpipe[1]);
  uint64_t id = 0;
  if (read(idpipe[0], &id, sizeof id) != sizeof id) die("child id");
  int p = pipe_with("for-nobody");
  check("send", send_fds(&s, id, &p, 1) == 0, "SEND to the uid 65534 receiver");
  int st;
  waitpid(pid, &st, 0);
  check("exit", WIFEXITED(st) && WEXITSTATUS(st) == 0, "receiver status %d", st);
}

static int tracer_pid_of_self(void) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  char *t = strstr(buf, "TracerPid:");
  return t ? atoi(t + 10) : -1;
}

// A receiver traced by someone else: RECV fails cleanly (EPERM), the
// message stays queued, and arrives once the tracer is gone.
static void traced(void) {
  make_bus("traced");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  int go[2];
  if (pipe(go) < 0) die("pipe");
  pid_t me = getpid();
  pid_t tracer = fork();
  if (tracer == 0) {
    close(go[1]);
    if (ptrace(PTRACE_SEIZE, me, NULL, NULL) < 0) _exit(1);
    char c;
    read(go[0], &c, 1);  // until told
    _exit(0);            // the tracee is detached when we go
  }
  close(go[0]);
  for (int i = 0; i < 500 && tracer_pid_of_self() != tracer; i++) usleep(2000);
  check("is-traced", tracer_pid_of_self() == tracer, "TracerPid %d", tracer_pid_of_self());
  int p = pipe_with("after-detach");
  check("send", send_fds(&s, r.id, &p, 1) == 0, "SEND");
  int before = open_fds();
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  struct got g;
  int e = recv_msg(&r, 0, &m, &cmd);
  check("refused", e == EPERM, "RECV while traced: %s", e ? ename(e) : "ok");
  check("nothing-installed", open_fds() == before, "%d fds open, %d before", open_fds(), before);
  e = recv_msg(&r, KDBUS_RECV_PEEK, &m, &cmd);
  parse(&r, m, &g);
  check("still-queued", e == 0 && g.nfds == 1 && g.fds[0] == -1, "PEEK: %s", e ? ename(e) : "ok");
  if (!e) free_msg(&r, cmd.msg.offset);
  write(go[1], "x", 1);
  int st;
  waitpid(tracer, &st, 0);
  for (int i = 0; i < 500 && tracer_pid_of_self() != 0; i++) usleep(2000);
  e = recv_msg(&r, 0, &m, &cmd);
  char buf[64] = "";
  if (!e) {
    parse(&r, m, &g);
    read_all(g.fds[0], buf, sizeof buf);
  }
  check("after-detach", e == 0 && !strcmp(buf, "after-detach"), "RECV once untraced: %s, read '%s'",
        e ? ename(e) : "ok", buf);
}

// A receiver under a seccomp filter that kills on socket(2)/socketpair(2):
// RECV fails cleanly (EPERM) and the receiver lives on.
static void seccomp(void) {
  make_bus("seccomp");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD);
  int idpipe[2];
  if (pipe(idpipe) < 0) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(idpipe[0]);
    struct conn r = hello(KDBUS_HELLO_ACCEPT_FD);
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
      _exit(2);
    if (write(idpipe[1], &r.id, sizeof r.id) != sizeof r.id) _exit(3);
    struct pollfd pf = {r.fd, POLLIN, 0};
    poll(&pf, 1, 5000);
    struct kdbus_msg *m = NULL;
    struct kdbus_cmd_recv cmd;
    struct got g;
    int e = recv_msg(&r, 0, &m, &cmd);
    check("refused", e == EPERM, "RECV under seccomp: %s", e ? ename(e) : "ok");
    e = recv_msg(&r, KDBUS_RECV_PEEK, &m, &cmd);
    parse(&r, m, &g);
    check("still-queued", e == 0 && g.nfds == 1, "PEEK: %s", e ? ename(e) : "ok");
    if (!e) free_msg(&r, cmd.msg.offset);
    check("drop", recv_msg(&r, KDBUS_RECV_DROP, NULL, &cmd) == 0, "DROP");
    _exit(0);
  }
  close(idpipe[1]);
  uint64_t id = 0;
  if (read(idpipe[0], &id, sizeof id) != sizeof id) die("child id");
  int p = pipe_with("x");
  check("send", send_fds(&s, id, &p, 1) == 0, "SEND");
  int st;
  waitpid(pid, &st, 0);
  check("survives", WIFEXITED(st) && WEXITSTATUS(st) == 0, "receiver %s %d",
        WIFSIGNALED(st) ? "killed by signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

struct replier {
  struct conn *c;
  int pipe_rd;
  int memfd;  // made (and closed) by the caller: a close racing the install would move the numbers
  int err;
};

static void *reply_thread(void *p) {
  struct replier *a = p;
  struct pollfd pf = {a->c->fd, POLLIN, 0};
  poll(&pf, 1, 5000);
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  a->err = recv_msg(a->c, 0, &m, &cmd);
  if (a->err) return NULL;
  uint64_t src = m->src_id, cookie = m->cookie;
  free_msg(a->c, cmd.msg.offset);
  a->err = send_msg(a->c, src, 2, "reply", &a->memfd, 1, &a->pipe_rd, 1, 0, cookie, 0, NULL);
  return NULL;
}

// A synchronous call whose reply carries fds: they are installed in the caller.
static void sync_call(void) {
  make_bus("sync");
  struct conn caller = hello(KDBUS_HELLO_ACCEPT_FD), callee = hello(KDBUS_HELLO_ACCEPT_FD);
  struct replier a = {.c = &callee, .pipe_rd = pipe_with("in-the-reply"), .memfd = make_memfd("reply-memfd")};
  pthread_t th;
  pthread_create(&th, NULL, reply_thread, &a);
  struct kdbus_cmd_send cmd;
  int want[2];
  lowest_free(want, 2);
  int e = send_msg(&caller, callee.id, 1, "call", NULL, 0, NULL, 0, KDBUS_MSG_EXPECT_REPLY, 0, KDBUS_SEND_SYNC_REPLY,
                   &cmd);
  pthread_join(th, NULL);
  check("call", e == 0 && a.err == 0, "sync call %s, replier %s", e ? ename(e) : "ok", a.err ? ename(a.err) : "ok");
  if (e) return;
  struct got g;
  parse(&caller, (struct kdbus_msg *)(caller.pool + cmd.reply.offset), &g);
  char buf[64] = "", mbuf[64] = "";
  read_all(g.fds[0], buf, sizeof buf);
  ssize_t mr = pread(g.memfd[0], mbuf, sizeof mbuf - 1, 0);
  if (mr > 0) mbuf[mr] = 0;
  check("reply-fds", g.nmem == 1 && g.nfds == 1 && !strcmp(buf, "in-the-reply") && !strcmp(mbuf, "reply-memfd"),
        "reply: memfd '%s', pipe '%s'", mbuf, buf);
  check("reply-numbers", g.memfd[0] == want[0] && g.fds[0] == want[1] && cloexec(g.fds[0]),
        "got %d %d, lowest free %d %d", g.memfd[0], g.fds[0], want[0], want[1]);
  check("reply-flags", cmd.reply.return_flags == 0, "reply.return_flags %llu", (unsigned long long)cmd.reply.return_flags);
  free_msg(&caller, cmd.reply.offset);
  close(a.memfd);
}

// RLIMIT_NOFILE leaves room for a few fds only: those that fit arrive, the
// others read -1, and KDBUS_RECV_RETURN_INCOMPLETE_FDS is set.
static void incomplete(void) {
  make_bus("incomplete");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  int p = pipe_with("x");
  int fds[6] = {p, p, p, p, p, p};
  check("send", send_fds(&s, r.id, fds, 6) == 0, "SEND 6 fds");
  int free3[4];
  lowest_free(free3, 4);
  // 4 numbers free below the limit (the last free one and all below it)
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  struct rlimit tight = {(rlim_t)free3[3] + 1, rl.rlim_max};
  setrlimit(RLIMIT_NOFILE, &tight);
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  struct got g;
  int e = recv_msg(&r, 0, &m, &cmd);
  setrlimit(RLIMIT_NOFILE, &rl);
  check("recv", e == 0, "RECV: %s", e ? ename(e) : "ok");
  if (e) return;
  parse(&r, m, &g);
  int installed = 0, firsts = 1;
  for (int i = 0; i < g.nfds; i++) {
    if (g.fds[i] >= 0) {
      installed++;
      firsts = firsts && (i == 0 || g.fds[i - 1] >= 0) && same_file(g.fds[i], p);
    }
  }
  check("some", installed >= 1 && installed < 6 && firsts, "%d of 6 installed (%d %d %d %d %d %d)", installed,
        g.fds[0], g.fds[1], g.fds[2], g.fds[3], g.fds[4], g.fds[5]);
  check("flag", cmd.msg.return_flags & KDBUS_RECV_RETURN_INCOMPLETE_FDS, "msg.return_flags %llu",
        (unsigned long long)cmd.msg.return_flags);
  check("starts-lowest", g.fds[0] == free3[0], "first fd %d, lowest free %d", g.fds[0], free3[0]);
}

// The receiving process's fd channel (native/fdchannel.h): a socket the
// server keeps in it between installs. It must not reach the server, must
// stay out of the way of the fd numbers, and the receiver may close or
// replace it at will: fds keep coming, where the kernel would put them.
static int find_channel(int below) {
  for (int fd = 4095; fd > below; fd--) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) return fd;
  }
  return -1;
}

// One fd sent and received: at the lowest free number (or at `at`, when >= 0), O_CLOEXEC.
static int recv_one_fd_at(struct conn *s, struct conn *r, int p, int *got, int at) {
  int want[1] = {at};
  if (at < 0) lowest_free(want, 1);
  if (send_fds(s, r->id, &p, 1)) return 0;
  struct kdbus_msg *m = NULL;
  struct kdbus_cmd_recv cmd;
  struct got g;
  if (recv_msg(r, 0, &m, &cmd)) return 0;
  parse(r, m, &g);
  free_msg(r, cmd.msg.offset);
  *got = g.nfds == 1 ? g.fds[0] : -1;
  return g.nfds == 1 && g.fds[0] == want[0] && same_file(g.fds[0], p) && cloexec(g.fds[0]);
}

static int recv_one_fd(struct conn *s, struct conn *r, int p, int *got) { return recv_one_fd_at(s, r, p, got, -1); }

static void channel(void) {
  make_bus("channel");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  value("tid", (double)syscall(SYS_gettid));
  int p = pipe_with("x"), got = -1;
  int ok = recv_one_fd(&s, &r, p, &got);
  check("first", ok, "an fd at the lowest free number (%d)", got);
  int ch = find_channel(got);
  check("found", ch > got && cloexec(ch), "a socket above it, O_CLOEXEC (%d)", ch);
  if (ch < 0) return;
  signal(SIGPIPE, SIG_IGN);
  ssize_t sent = send(ch, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  int e = errno;
  check("send-only", sent < 0 && e == EPIPE, "sending on it fails: %s", sent < 0 ? ename(e) : "sent");
  struct ucred cred = {0, 0, 0};
  socklen_t len = sizeof cred;
  int pc = getsockopt(ch, SOL_SOCKET, SO_PEERCRED, &cred, &len);
  check("peer-is-self", pc == 0 && cred.pid == getpid(), "SO_PEERCRED names the receiver (pid %d)", (int)cred.pid);
  int more = 1;
  for (int i = 0; i < 5; i++) {
    more = more && recv_one_fd(&s, &r, p, &got);
    close(got);
  }
  check("again", more && find_channel(got) == ch, "5 more, through the same socket");
  close(ch);
  ok = recv_one_fd(&s, &r, p, &got);
  check("after-close", ok, "closed by the receiver: fds still come (%d)", got);
  int ch2 = find_channel(got);
  int other = pipe_with("y");
  if (ch2 >= 0) dup2(other, ch2);
  ok = recv_one_fd(&s, &r, p, &got);
  check("after-replace", ok && ch2 >= 0 && same_file(ch2, other),
        "replaced by the receiver's own file: fds still come (%d), its file untouched", got);
  // Every number below the socket taken: the next fd takes the socket's
  // number, as it would without it; the socket moves out of the way.
  int ch3 = find_channel(got);
  int fillers = 0;
  for (int lf[1];; fillers++) {
    lowest_free(lf, 1);
    if (ch3 < 0 || lf[0] >= ch3 || dup(p) < 0) break;
  }
  ok = recv_one_fd_at(&s, &r, p, &got, ch3);
  check("crowded", ok && ch3 >= 0, "%d fds of its own below the socket (%d): the next fd takes its number (%d)",
        fillers, ch3, got);
  ok = recv_one_fd(&s, &r, p, &got);
  int ch4 = find_channel(got);
  check("moved", ok && ch4 > got, "and the one after (%d) comes through a socket above it (%d)", got, ch4);
}

static volatile sig_atomic_t sigs;
static void on_usr1(int s) {
  (void)s;
  sigs++;
}

struct storm {
  pid_t tid;
  volatile int stop;
};

static void *storm_thread(void *p) {
  struct storm *st = p;
  while (!st->stop) {
    syscall(SYS_tgkill, getpid(), st->tid, SIGUSR1);
    usleep(20);
  }
  return NULL;
}

// Signals rain on the receiving thread while its fds are installed.
static void storm(void) {
  make_bus("storm");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  enum { N = 100 };
  int ok = 0, same = 1;
  struct storm st = {(pid_t)syscall(SYS_gettid), 0};
  pthread_t th;
  pthread_create(&th, NULL, storm_thread, &st);
  for (int i = 0; i < N; i++) {
    char text[32];
    snprintf(text, sizeof text, "msg-%d", i);
    int p = pipe_with(text);
    int e = send_fds(&s, r.id, &p, 1);
    close(p);
    if (e && e != EINTR) continue;
    struct kdbus_msg *m = NULL;
    struct kdbus_cmd_recv cmd;
    struct got g;
    int re;
    while ((re = recv_msg(&r, 0, &m, &cmd)) == EINTR) {
    }
    if (re) continue;
    parse(&r, m, &g);
    char buf[32] = "";
    if (g.nfds == 1) read_all(g.fds[0], buf, sizeof buf);
    if (!strcmp(buf, text)) ok++;
    same = same && cloexec(g.fds[0]);
    close(g.fds[0]);
    free_msg(&r, cmd.msg.offset);
  }
  st.stop = 1;
  pthread_join(th, NULL);
  check("all", ok == N, "%d of %d messages with their fd under a signal storm", ok, N);
  check("signals", sigs > 0, "%d SIGUSR1 handled", (int)sigs);
  check("cloexec", same, "every fd close-on-exec");
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

// RECV latency, messages queued already: without fds, with 1 fd, with 16, with a memfd.
static void timing(void) {
  make_bus("timing");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  int sixteen[16];
  for (int i = 0; i < 16; i++) sixteen[i] = file;
  int memfd = make_memfd("timing");
  const struct {
    const char *name;
    int nfds;
    int nmem;
  } kinds[] = {{"recv_us_0fd", 0, 0}, {"recv_us_1fd", 1, 0}, {"recv_us_16fd", 16, 0}, {"recv_us_memfd", 0, 1}};
  enum { N = 100 };
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    int64_t t[N];
    int n = 0;
    for (int i = 0; i < N; i++) {
      if (send_msg(&s, r.id, 1, "t", &memfd, kinds[k].nmem, sixteen, kinds[k].nfds, 0, 0, 0, NULL)) continue;
      struct kdbus_msg *m = NULL;
      struct kdbus_cmd_recv cmd;
      struct got g;
      int64_t t0 = now_ns();
      int e = recv_msg(&r, 0, &m, &cmd);
      int64_t t1 = now_ns();
      if (e) continue;
      t[n++] = t1 - t0;
      parse(&r, m, &g);
      for (int j = 0; j < g.nfds; j++) close(g.fds[j]);
      for (int j = 0; j < g.nmem; j++) close(g.memfd[j]);
      free_msg(&r, cmd.msg.offset);
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_i64);
    check(kinds[k].name, n == N, "%d of %d received", n, N);
    value(kinds[k].name, n ? t[n / 2] / 1000.0 : -1);
  }
}

// Messages with fds that are dropped, received, left queued at disconnect,
// and sent to a sync caller that is gone: the server must close every copy.
static void churn(void) {
  make_bus("churn");
  struct conn s = hello(KDBUS_HELLO_ACCEPT_FD), r = hello(KDBUS_HELLO_ACCEPT_FD);
  int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  int memfd = make_memfd("churn");
  int three[3] = {file, file, file};
  int sent = 0;
  for (int i = 0; i < 12; i++) sent += send_msg(&s, r.id, 1, "c", &memfd, 1, three, 3, 0, 0, 0, NULL) == 0;
  check("sent", sent == 12, "%d of 12 sent", sent);
  struct kdbus_cmd_recv cmd;
  int dropped = 0, received = 0;
  for (int i = 0; i < 4; i++) dropped += recv_msg(&r, KDBUS_RECV_DROP, NULL, &cmd) == 0;
  for (int i = 0; i < 4; i++) {
    struct kdbus_msg *m = NULL;
    struct got g;
    if (recv_msg(&r, 0, &m, &cmd)) continue;
    received++;
    parse(&r, m, &g);
    for (int j = 0; j < g.nfds; j++) close(g.fds[j]);
    close(g.memfd[0]);
    free_msg(&r, cmd.msg.offset);
  }
  check("dropped-received", dropped == 4 && received == 4, "%d dropped, %d received", dropped, received);
  // 4 still queued: gone with the connection
  munmap(r.pool, POOL);
  close(r.fd);
  close(file);
  close(memfd);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: fd-client ROOT SCENARIO\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  root = argv[1];
  const char *sc = argv[2];
  if (!strcmp(sc, "basic")) basic();
  else if (!strcmp(sc, "peek")) peek();
  else if (!strcmp(sc, "thread")) thread();
  else if (!strcmp(sc, "unpriv")) unpriv();
  else if (!strcmp(sc, "traced")) traced();
  else if (!strcmp(sc, "seccomp")) seccomp();
  else if (!strcmp(sc, "sync")) sync_call();
  else if (!strcmp(sc, "incomplete")) incomplete();
  else if (!strcmp(sc, "storm")) storm();
  else if (!strcmp(sc, "timing")) timing();
  else if (!strcmp(sc, "churn")) churn();
  else if (!strcmp(sc, "channel")) channel();
  else {
    fprintf(stderr, "unknown scenario %s\n", sc);
    return 2;
  }
  printf("done\n");
  return 0;
}
