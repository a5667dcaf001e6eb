// What the kdbus test clients share (test/clients/*.c, built against
// the kdbus ABI only (include/kdbus-abi.h)): item arithmetic, the memfd seal
// constants older libc headers lack, a monotonic clock, errno names, and the
// line protocol's command lines in and one answer line out.
#ifndef KDBUSFS_TEST_CLIENT_H
#define KDBUSFS_TEST_CLIENT_H

#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kdbus-abi.h"

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)
#define ITEM_HDR offsetof(struct kdbus_item, data)
#define ITEM_NEXT(it) ((struct kdbus_item *)((uint8_t *)(it) + ALIGN8((it)->size)))

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline const char *ename(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "E?";
}

// One answer line on stdout ("ok ..." / "err ENAME ..."), flushed at once.
static inline void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void answer(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

// The next command line on stdin, split at spaces into av (at most max
// words): the word count (0 for an empty line), or -1 at the end of input.
// The words stay valid until the next call.
static inline int next_command(char **av, int max) {
  static char *line;
  static size_t cap;
  ssize_t len = getline(&line, &cap, stdin);
  if (len <= 0) return -1;
  if (line[len - 1] == '\n') line[len - 1] = 0;
  int ac = 0;
  for (char *save = NULL, *t = strtok_r(line, " ", &save); t && ac < max; t = strtok_r(NULL, " ", &save)) av[ac++] = t;
  return ac;
}

// The line protocol's "setuid UID": uid and gid UID, no supplementary groups.
static inline void cmd_drop_to(const char *uid) {
  unsigned id = (unsigned)atoi(uid);
  if (setgroups(0, NULL) || setresgid(id, id, id) || setresuid(id, id, id)) answer("err %s setuid", ename(errno));
  else answer("ok");
}

#endif
