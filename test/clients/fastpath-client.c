// The trivial requests kdbusfs answers natively (native/fastpath.h) and their
// edge cases, each printed as one line: a step name, the errno (or the
// result), and every byte of the command struct after the call, in hex. The
// same run against a server with KDBUSFS_FASTPATH=0 must print the same
// (test/fastpath.test.ts).
//
//   fastpath-client ROOT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kdbus-abi.h"

static uint64_t buf[4096] __attribute__((aligned(8)));

// Prints step, the answer and the first len bytes of buf.
static int show(const char *step, int r, size_t len) {
  printf("%s %s", step, r < 0 ? strerrorname_np(errno) : "0");
  for (size_t i = 0; i < len; i++) printf("%s%02x", i % 8 ? "" : " ", ((uint8_t *)buf)[i]);
  printf("\n");
  return r;
}

// An ioctl with buf holding words (the rest zero); shows len bytes after.
static int call(const char *step, int fd, unsigned long req, size_t len, int n, const uint64_t *words) {
  memset(buf, 0, 512);
  memcpy(buf, words, n * sizeof *words);
  return show(step, ioctl(fd, req, buf), len);
}

#define CALL(step, fd, req, len, ...)                                                   \
  call(step, fd, req, len, sizeof((uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t), \
       (uint64_t[]){__VA_ARGS__})

static void showPoll(const char *step, int fd) {
  struct pollfd p = {fd, POLLIN | POLLOUT, 0};
  int r = poll(&p, 1, 0);
  printf("%s %d %x\n", step, r, r > 0 ? p.revents : 0);
}

static int openAt(const char *root, const char *rel) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror(path);
    exit(1);
  }
  return fd;
}

// HELLO with flags and a 1 MiB pool; shown without the bus's random id128.
static int hello(const char *step, int fd, uint64_t flags) {
  return CALL(step, fd, KDBUS_CMD_HELLO, 88, 104, flags, 0, 0, ~0ULL, ~0ULL, 0, 0, 1 << 20);
}

// A message without payload from fd to dst; the SEND's answer is shown.
static void sendTo(const char *step, int fd, uint64_t dst) {
  static uint64_t msg[8] __attribute__((aligned(8)));
  memset(msg, 0, sizeof msg);
  msg[0] = sizeof msg, msg[3] = dst, msg[5] = KDBUS_PAYLOAD_DBUS, msg[6] = 7;  // size, dst_id, payload_type, cookie
  CALL(step, fd, KDBUS_CMD_SEND, 40, 72, 0, 0, 0, 0, (uint64_t)(uintptr_t)msg);  // not msg_address
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  const char *root = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);

  // the control file: refusals before and after the bus exists
  int control = openAt(root, "control");
  CALL("make-size-8", control, KDBUS_CMD_BUS_MAKE, 32, 8, 0x55, 0x66, 0x77);
  CALL("make-size-31", control, KDBUS_CMD_BUS_MAKE, 32, 31);
  CALL("make-too-big", control, KDBUS_CMD_BUS_MAKE, 32, 1 << 20);
  CALL("make-unknown-flags", control, KDBUS_CMD_BUS_MAKE, 32, 32, 1 << 7, 0, 0x55);
  CALL("make-kernel-flag", control, KDBUS_CMD_BUS_MAKE, 32, 32, KDBUS_FLAG_KERNEL, KDBUS_FLAG_KERNEL | 3);
  CALL("make-unknown-flags-items", control, KDBUS_CMD_BUS_MAKE, 32, 64, 1 << 7);
  CALL("make-flags-no-items", control, KDBUS_CMD_BUS_MAKE, 32, 32, KDBUS_MAKE_ACCESS_WORLD);
  CALL("unknown-ioctl", control, _IOW(KDBUS_IOCTL_MAGIC, 0x7f, uint64_t[4]), 32, 8);
  CALL("recv-on-control", control, KDBUS_CMD_RECV, 72, 72);
  {
    uint64_t *it = buf + 4;
    memset(buf, 0, 512);
    it[0] = 32, it[1] = KDBUS_ITEM_BLOOM_PARAMETER, it[2] = 64, it[3] = 1;
    it += 4;
    const char *name = "0-fastpath";
    it[0] = 16 + strlen(name) + 1, it[1] = KDBUS_ITEM_MAKE_NAME;
    strcpy((char *)(it + 2), name);
    it += 2 + (strlen(name) + 1 + 7) / 8;
    buf[0] = (uint8_t *)it - (uint8_t *)buf;
    buf[1] = KDBUS_MAKE_ACCESS_WORLD;
    show("make", ioctl(control, KDBUS_CMD_BUS_MAKE, buf), 32);
  }
  CALL("make-size-8-again", control, KDBUS_CMD_BUS_MAKE, 32, 8);
  showPoll("poll-control", control);

  // an endpoint file not connected yet
  int a = openAt(root, "0-fastpath/bus");
  showPoll("poll-unconnected", a);
  CALL("hello-size-8", a, KDBUS_CMD_HELLO, 104, 8);
  CALL("hello-unknown-flags", a, KDBUS_CMD_HELLO, 104, 104, 1 << 9, 0, 0x55);
  CALL("ep-make-size-8", a, KDBUS_CMD_ENDPOINT_MAKE, 32, 8, 0, 0, 0x55);
  CALL("ep-make-unknown-flags", a, KDBUS_CMD_ENDPOINT_MAKE, 32, 32, 1 << 9, 0, 0x55);
  CALL("recv-unconnected", a, KDBUS_CMD_RECV, 72, 72);
  CALL("free-unconnected", a, KDBUS_CMD_FREE, 40, 40);
  hello("hello", a, KDBUS_HELLO_ACCEPT_FD);
  uint64_t idA = buf[7];

  // connected, nothing queued
  showPoll("poll-empty", a);
  CALL("recv-fresh", a, KDBUS_CMD_RECV, 72, 72, 0, 0, 0x77, 3, 5, 6, 7, 8);
  CALL("recv-kernel-flags-set", a, KDBUS_CMD_RECV, 72, 72, 0, KDBUS_FLAG_KERNEL | 7);
  CALL("recv-all-flags", a, KDBUS_CMD_RECV, 72, 72, KDBUS_RECV_PEEK | KDBUS_RECV_DROP | KDBUS_RECV_USE_PRIORITY);
  CALL("recv-drop", a, KDBUS_CMD_RECV, 72, 72, KDBUS_RECV_DROP);
  CALL("recv-unknown-flags", a, KDBUS_CMD_RECV, 72, 72, 1 << 5, 0, 0x55);
  CALL("recv-kernel-flag", a, KDBUS_CMD_RECV, 72, 72, KDBUS_FLAG_KERNEL);
  CALL("recv-size-71", a, KDBUS_CMD_RECV, 72, 71);
  CALL("recv-size-8", a, KDBUS_CMD_RECV, 72, 8);
  CALL("recv-too-big", a, KDBUS_CMD_RECV, 72, 1 << 20);
  CALL("recv-bad-item", a, KDBUS_CMD_RECV, 72, 88);
  CALL("name-acquire-size-8", a, KDBUS_CMD_NAME_ACQUIRE, 32, 8, 0, 0, 0x55);
  CALL("name-acquire-unknown-flags", a, KDBUS_CMD_NAME_ACQUIRE, 32, 32, 1 << 9, 0, 0x55);
  CALL("hello-again-size-8", a, KDBUS_CMD_HELLO, 104, 8);

  // slices: freed once, twice, bad offsets; a freed slice is reused at once
  CALL("list-1", a, KDBUS_CMD_NAME_LIST, 48, 48, KDBUS_NAME_LIST_UNIQUE);
  uint64_t off1 = buf[4];
  CALL("list-2", a, KDBUS_CMD_NAME_LIST, 48, 48, KDBUS_NAME_LIST_UNIQUE);
  uint64_t off2 = buf[4];
  CALL("free-1", a, KDBUS_CMD_FREE, 40, 40, off1, 0, 0, 0x99);
  CALL("free-1-twice", a, KDBUS_CMD_FREE, 40, 40, off1);
  CALL("list-reuses-1", a, KDBUS_CMD_NAME_LIST, 48, 48, KDBUS_NAME_LIST_UNIQUE);
  CALL("free-bad-offset", a, KDBUS_CMD_FREE, 40, 40, off2 + 8);
  CALL("free-far-offset", a, KDBUS_CMD_FREE, 40, 40, 1ULL << 40);
  CALL("free-unknown-flags", a, KDBUS_CMD_FREE, 40, 40, off2, 1, 0, 0x99);
  CALL("free-with-item", a, KDBUS_CMD_FREE, 40, 56, off2);
  CALL("free-size-8", a, KDBUS_CMD_FREE, 40, 8, off2);
  CALL("free-2-set", a, KDBUS_CMD_FREE, 40, 40, off2, 0, KDBUS_FLAG_KERNEL, 0);
  CALL("free-2-again", a, KDBUS_CMD_FREE, 40, 40, off2, 0, KDBUS_FLAG_KERNEL, 0);
  CALL("free-reused", a, KDBUS_CMD_FREE, 40, 40, off1);

  // a message arrives: the queue is not empty any more, then empty again
  int b = openAt(root, "0-fastpath/bus");
  hello("hello-b", b, 0);
  sendTo("send-b-a", b, idA);
  showPoll("poll-queued", a);
  CALL("recv-peek", a, KDBUS_CMD_RECV, 72, 72, KDBUS_RECV_PEEK);
  uint64_t peeked = buf[6];
  CALL("free-peeked", a, KDBUS_CMD_FREE, 40, 40, peeked);
  CALL("recv", a, KDBUS_CMD_RECV, 72, 72);
  uint64_t msgOff = buf[6];
  showPoll("poll-drained", a);
  CALL("recv-after", a, KDBUS_CMD_RECV, 72, 72);
  CALL("free-msg", a, KDBUS_CMD_FREE, 40, 40, msgOff);
  CALL("free-msg-twice", a, KDBUS_CMD_FREE, 40, 40, msgOff);
  sendTo("send-b-a-2", b, idA);
  sendTo("send-b-a-3", b, idA);
  CALL("recv-drop-one", a, KDBUS_CMD_RECV, 72, 72, KDBUS_RECV_DROP);
  CALL("recv-one-left", a, KDBUS_CMD_RECV, 72, 72);
  CALL("recv-none-left", a, KDBUS_CMD_RECV, 72, 72);

  // a monitor: RECV serves it, NAME_ACQUIRE refuses its kind before its size
  int m = openAt(root, "0-fastpath/bus");
  hello("hello-monitor", m, KDBUS_HELLO_MONITOR);
  CALL("monitor-recv", m, KDBUS_CMD_RECV, 72, 72);
  CALL("monitor-name-acquire-size-8", m, KDBUS_CMD_NAME_ACQUIRE, 32, 8);
  CALL("monitor-send-size-8", m, KDBUS_CMD_SEND, 72, 8);

  // a custom endpoint's owner
  int o = openAt(root, "0-fastpath/bus");
  {
    memset(buf, 0, 512);
    const char *name = "0-ep";
    buf[0] = 32 + 16 + 8, buf[4] = 16 + strlen(name) + 1, buf[5] = KDBUS_ITEM_MAKE_NAME;
    strcpy((char *)(buf + 6), name);
    show("ep-make", ioctl(o, KDBUS_CMD_ENDPOINT_MAKE, buf), 32);
  }
  CALL("ep-update-size-8", o, KDBUS_CMD_ENDPOINT_UPDATE, 32, 8);
  CALL("ep-update-unknown-flags", o, KDBUS_CMD_ENDPOINT_UPDATE, 32, 32, 1, 0, 0x55);
  CALL("ep-update-recv", o, KDBUS_CMD_RECV, 72, 72);
  showPoll("poll-owner", o);

  // disconnected: everything goes to the core again
  show("byebye", ioctl(a, KDBUS_CMD_BYEBYE, 0), 0);
  showPoll("poll-disconnected", a);
  CALL("recv-disconnected", a, KDBUS_CMD_RECV, 72, 72);
  CALL("free-disconnected", a, KDBUS_CMD_FREE, 40, 40, off1);
  CALL("recv-disconnected-size-8", a, KDBUS_CMD_RECV, 72, 8);
  close(b);
  CALL("monitor-recv-id-remove", m, KDBUS_CMD_RECV, 72, 72);
  return 0;
}
