// hostile-memory: test/hostile-memory.test.ts's kdbus client, as victim or
// attacker, driven like kdbus-peer (test/harness.ts Peer): one line when
// ready, then one command per line on stdin, each answered with one line,
// "ok key=value ..." or "err ENAME ...". Written against
// include/uapi/linux/kdbus.h only.
//
// Commands:
//   setuid UID            drop to UID (gid UID too), before hello
//   hello BUS             two connections to BUS (HELLO, 8 MiB pools, mmap):
//                         the main one (its id answered) and a second one in
//                         the same process, the attacks' destination
//   serve                 answer every call on the main connection (8 bytes
//                         back) from a thread
//   calls DST N RATE MS   N synchronous 8-byte calls to DST, one every
//                         1/RATE s (timeout MS each): test/clients/victim.h
//   map PATH              maps PATH (1 MiB, PROT_READ | PROT_WRITE,
//                         MAP_PRIVATE): a file whose pages never come in
//   attack msg OFF        SEND to the second connection with msg_address at
//                         OFF in the mapping
//   attack vec OFF        SEND of an ordinary message whose 8-byte
//                         PAYLOAD_VEC lies at OFF in the mapping
//   attack write OFF      a synchronous call from the main connection to the
//                         second, its command in an ordinary page; while it
//                         waits, that page is replaced by the mapping's page
//                         at OFF (MAP_FIXED) and the second connection
//                         replies with an fd: the server installs it, then
//                         writes the reply's offset into the command, in the
//                         stuck page
//   (attack answers errno=ENAME (- for success) ms=TIME of the SEND, for
//   write the time from the reply to the caller's return, or reply=none and
//   the call's own time when the call itself was refused)
//   fdmsg [OFF]           a message with an fd (/dev/null) from the main
//                         connection to the second, received there; with OFF,
//                         the RECV is made with the stack pointer in the
//                         mapping (at OFF + 2 pages): answer errno=ENAME ms=
//                         (of the RECV) fds=N
//   exit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#include "client.h"
#include "victim.h"

#define POOL_SIZE (8u << 20)
#define MAP_SIZE (1u << 20)
#define PAGE 4096

static struct conn main_conn = CONN_INIT, aux_conn = CONN_INIT;
static uint8_t *hostile;  // the mapping whose pages never come in
static int hostile_fd = -1;
static pthread_t serve_thread;

// ---- attacker ----

static void attack_answer(int e, int64_t ns) {
  answer("ok errno=%s ms=%.1f", e ? ename(e) : "-", (double)ns / 1e6);
}

static void attack_send(uint64_t msg_addr) {
  struct kdbus_cmd_send cmd = { .size = sizeof(cmd), .msg_address = msg_addr };
  int64_t a = now_ns();
  int e = ioctl(main_conn.fd, KDBUS_CMD_SEND, &cmd) < 0 ? errno : 0;
  attack_answer(e, now_ns() - a);
}

struct waiting_call {
  struct kdbus_cmd_send *cmd;
  int err;
  int64_t returned;
};

static void *call_main(void *arg) {
  struct waiting_call *w = arg;
  w->err = ioctl(main_conn.fd, KDBUS_CMD_SEND, w->cmd) < 0 ? errno : 0;
  __atomic_store_n(&w->returned, now_ns(), __ATOMIC_RELEASE);
  return NULL;
}

static void attack_write(size_t off) {
  uint8_t *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return answer("err %s mmap", ename(errno));
  uint64_t payload = 1, buf[MSG_WORDS];
  struct kdbus_msg *m = build_msg(buf, aux_conn.id, 1, KDBUS_MSG_EXPECT_REPLY, 0, (uintptr_t)&payload, 10000);
  struct kdbus_cmd_send *cmd = (struct kdbus_cmd_send *)page;
  cmd->size = sizeof(*cmd);
  cmd->flags = KDBUS_SEND_SYNC_REPLY;
  cmd->msg_address = (uintptr_t)m;
  struct waiting_call w = { cmd, 0, 0 };
  pthread_t th;
  pthread_create(&th, NULL, call_main, &w);
  // The call arrives at the second connection: the caller waits for its reply.
  struct kdbus_cmd_recv r;
  int e;
  int64_t sent = now_ns();
  do {
    struct pollfd p = { aux_conn.fd, POLLIN, 0 };
    poll(&p, 1, 100);
    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    e = ioctl(aux_conn.fd, KDBUS_CMD_RECV, &r) < 0 ? errno : 0;
    // A call refused before it arrived (this uid's copies refused at once):
    // there is nothing to reply to.
    if (e == EAGAIN && __atomic_load_n(&w.returned, __ATOMIC_ACQUIRE)) {
      pthread_join(th, NULL);
      return answer("ok errno=%s ms=%.1f reply=none", w.err ? ename(w.err) : "-", (double)(w.returned - sent) / 1e6);
    }
  } while (e == EAGAIN);
  if (e) return answer("err %s recv", ename(e));
  const struct kdbus_msg *got = (const void *)(aux_conn.pool + r.msg.offset);
  uint64_t cookie = got->cookie, src = got->src_id;
  conn_free(&aux_conn, r.msg.offset);
  // The command's page becomes a page of the file (the kernel copied the
  // command's head already; the reply's offset is written back later).
  if (mmap(page, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, hostile_fd, (off_t)off) == MAP_FAILED)
    return answer("err %s mmap fixed", ename(errno));
  // The reply carries an fd: the server installs it in the caller (it stops
  // that thread meanwhile), then writes the reply's offset into the command
  // itself instead of the kernel copying it out (lib/core/handle.ts).
  uint64_t rp = 0, rbuf[MSG_WORDS + 4];
  struct kdbus_msg *reply = build_msg(rbuf, src, 2, 0, cookie, (uintptr_t)&rp, 0);
  struct kdbus_item *fds = ITEM_NEXT(reply->items);
  memset(fds, 0, ALIGN8(ITEM_HDR + sizeof(int)));
  fds->size = ITEM_HDR + sizeof(int);
  fds->type = KDBUS_ITEM_FDS;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fds->fds[0] = devnull;
  reply->size += ALIGN8(fds->size);
  struct kdbus_cmd_send rcmd = { .size = sizeof(rcmd), .msg_address = (uintptr_t)reply };
  int64_t a = now_ns();
  int re = ioctl(aux_conn.fd, KDBUS_CMD_SEND, &rcmd) < 0 ? errno : 0;
  pthread_join(th, NULL);
  close(devnull);
  answer("ok errno=%s ms=%.1f reply=%s", w.err ? ename(w.err) : "-", (double)(w.returned - a) / 1e6,
         re ? ename(re) : "-");
}

// KDBUS_CMD_RECV on fd with the stack pointer at sp for the system call (the
// kernel does not touch the user stack on a system call; neither may we
// meanwhile).
static long recv_on_stack(int fd, struct kdbus_cmd_recv *r, void *sp) {
#if defined(__x86_64__)
  long ret;
  __asm__ volatile("mov %%rsp, %%r12\n\t"
                   "mov %[sp], %%rsp\n\t"
                   "syscall\n\t"
                   "mov %%r12, %%rsp"
                   : "=a"(ret)
                   : "a"((long)SYS_ioctl), "D"((long)fd), "S"((long)KDBUS_CMD_RECV), "d"(r), [sp] "r"(sp)
                   : "rcx", "r11", "r12", "memory");
  return ret;
#else
  (void)fd, (void)r, (void)sp;
  return -ENOSYS;
#endif
}

// A message with an fd from the main connection to the second one, received
// there with the stack pointer at sp (NULL: as usual). Answers errno=ENAME
// (- for success) ms=TIME of the RECV fds=N (fds received).
static void fd_message(void *sp) {
  uint64_t payload = 1;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int e = send_fds(&main_conn, aux_conn.id, &payload, sizeof(payload), devnull, 1);
  close(devnull);
  if (e) return answer("err %s send", ename(e));
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  int64_t a = now_ns();
  if (sp) {
    long ret = recv_on_stack(aux_conn.fd, &r, sp);
    e = ret < 0 ? (int)-ret : 0;
  } else {
    e = ioctl(aux_conn.fd, KDBUS_CMD_RECV, &r) < 0 ? errno : 0;
  }
  int64_t ns = now_ns() - a;
  int got = e ? 0 : take_fds(&aux_conn, r.msg.offset, close);
  answer("ok errno=%s ms=%.1f fds=%d", e ? ename(e) : "-", (double)ns / 1e6, got);
}

int main(void) {
  answer("ok ready");
  char *av[8];
  int ac;
  while ((ac = next_command(av, 8)) >= 0) {
    if (!ac) continue;
    if (!strcmp(av[0], "setuid") && ac == 2) {
      cmd_drop_to(av[1]);
    } else if (!strcmp(av[0], "hello") && ac == 2) {
      int e = conn_open(&main_conn, av[1], POOL_SIZE);
      if (!e) e = conn_open(&aux_conn, av[1], POOL_SIZE);
      if (e) answer("err %s hello", ename(e));
      else answer("ok id=%" PRIu64 " aux=%" PRIu64, main_conn.id, aux_conn.id);
    } else if (!strcmp(av[0], "serve")) {
      pthread_create(&serve_thread, NULL, serve_calls, &main_conn);
      answer("ok");
    } else if (!strcmp(av[0], "calls") && ac == 5) {
      victim_calls(&main_conn, strtoull(av[1], NULL, 0), atol(av[2]), atof(av[3]), atoi(av[4]));
    } else if (!strcmp(av[0], "map") && ac == 2) {
      int fd = open(av[1], O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        answer("err %s open", ename(errno));
        continue;
      }
      hostile = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      hostile_fd = fd;
      if (hostile == MAP_FAILED) answer("err %s mmap", ename(errno));
      else answer("ok");
    } else if (!strcmp(av[0], "attack") && ac == 3 && hostile) {
      size_t off = strtoul(av[2], NULL, 0) & ~(size_t)(PAGE - 1);
      if (off + PAGE > MAP_SIZE) {
        answer("err EINVAL offset");
      } else if (!strcmp(av[1], "msg")) {
        attack_send((uintptr_t)(hostile + off));
      } else if (!strcmp(av[1], "vec")) {
        uint64_t buf[MSG_WORDS];
        struct kdbus_msg *m = build_msg(buf, aux_conn.id, 1, 0, 0, (uintptr_t)(hostile + off), 0);
        attack_send((uintptr_t)m);
      } else if (!strcmp(av[1], "write")) {
        attack_write(off);
      } else {
        answer("err EINVAL attack");
      }
    } else if (!strcmp(av[0], "fdmsg") && ac == 1) {
      fd_message(NULL);
    } else if (!strcmp(av[0], "fdmsg") && ac == 2 && hostile) {
      // The stack pointer at the top of the page above OFF: the page below
      // it, where a push or a scratch write would go, never comes in.
      fd_message(hostile + (size_t)strtoull(av[1], NULL, 0) + 2 * PAGE);
    } else if (!strcmp(av[0], "exit")) {
      answer("ok");
      return 0;
    } else {
      answer("err EINVAL unknown command");
    }
  }
  return 0;
}
