// sysname-client: bus names and connection descriptions with bytes that are
// not UTF-8 text (e.g. 0xE9, a letter of the kernel's Latin-1 ctype table),
// for test/integration.test.ts. Written against include/uapi/linux/kdbus.h only.
//
// Speaks kdbus-peer's line protocol (test/harness.ts Peer): "ok ready" first,
// then one answer line per command line. Names travel as hex so that every
// byte survives the text protocol.
//   make CONTROL NAMEHEX           BUS_MAKE (MAKE_ACCESS_WORLD, bloom 64/1);
//                                  the control fd stays open until exit
//   hello PATHHEX DESCHEX          open the file at PATH, HELLO with the
//                                  CONN_DESCRIPTION DESC and a 1 MiB pool;
//                                  then CONN_INFO on its own id and
//                                  BUS_CREATOR_INFO. Answers ok id=N
//                                  desc=HEX (the CONN_DESCRIPTION item of the
//                                  info) creator=HEX (its MAKE_NAME item)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kdbus.h>

#include "client.h"

#define POOL_SIZE (1 << 20)

// Decodes hex into a NUL-terminated byte string; NULL if hex is not hex.
static char *unhex(const char *hex) {
  size_t n = strlen(hex);
  if (n % 2) return NULL;
  char *out = calloc(1, n / 2 + 1);
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
      free(out);
      return NULL;
    }
    out[i] = (char)v;
  }
  return out;
}

// Writes the hex of a C-string item's payload (without its NUL) into out.
static void tohex(const struct kdbus_item *it, char *out, size_t cap) {
  size_t n = strnlen(it->str, it->size - ITEM_HDR);
  out[0] = 0;
  for (size_t i = 0; i < n && 2 * i + 2 < cap; i++) sprintf(out + 2 * i, "%02x", (uint8_t)it->str[i]);
}

// An item of type in the kdbus_info at off of the pool, as hex ("-" if absent); the slice is freed.
static void info_item_hex(int fd, const uint8_t *pool, uint64_t off, uint64_t type, char *out, size_t cap) {
  const struct kdbus_info *info = (const struct kdbus_info *)(pool + off);
  strcpy(out, "-");
  for (const struct kdbus_item *it = info->items; (const uint8_t *)it < (const uint8_t *)info + info->size;
       it = (const struct kdbus_item *)((const uint8_t *)it + ALIGN8(it->size))) {
    if (it->type == type) tohex(it, out, cap);
  }
  struct kdbus_cmd_free f = { .size = sizeof(f), .offset = off };
  ioctl(fd, KDBUS_CMD_FREE, &f);
}

static int ctl_fd = -1;

static void cmd_make(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  char *name = unhex(av[2]);
  if (!name) return answer("err EINVAL hex");
  struct kdbus_bloom_parameter bp = { 64, 1 };
  size_t nlen = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_make) + ALIGN8(ITEM_HDR + sizeof(bp)) + ALIGN8(ITEM_HDR + nlen);
  struct kdbus_cmd_make *cmd = calloc(1, size);
  cmd->size = size;
  cmd->flags = KDBUS_MAKE_ACCESS_WORLD;
  struct kdbus_item *it = cmd->items;
  it->size = ITEM_HDR + sizeof(bp);
  it->type = KDBUS_ITEM_BLOOM_PARAMETER;
  memcpy(&it->bloom_parameter, &bp, sizeof(bp));
  it = (struct kdbus_item *)((uint8_t *)it + ALIGN8(it->size));
  it->size = ITEM_HDR + nlen;
  it->type = KDBUS_ITEM_MAKE_NAME;
  memcpy(it->str, name, nlen);
  free(name);
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    free(cmd);
    return answer("err %s open", ename(errno));
  }
  int r = ioctl(fd, KDBUS_CMD_BUS_MAKE, cmd);
  int e = errno;
  free(cmd);
  if (r < 0) {
    close(fd);
    return answer("err %s bus_make", ename(e));
  }
  ctl_fd = fd;
  answer("ok");
}

static void cmd_hello(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  char *path = unhex(av[1]);
  char *desc = unhex(av[2]);
  if (!path || !desc) {
    free(path);
    free(desc);
    return answer("err EINVAL hex");
  }
  int fd = open(path, O_RDWR | O_CLOEXEC);
  int e = errno;
  free(path);
  if (fd < 0) {
    free(desc);
    return answer("err %s open", ename(e));
  }
  size_t dlen = strlen(desc) + 1;
  size_t size = sizeof(struct kdbus_cmd_hello) + ALIGN8(ITEM_HDR + dlen);
  struct kdbus_cmd_hello *h = calloc(1, size);
  h->size = size;
  h->attach_flags_send = _KDBUS_ATTACH_ALL;
  h->pool_size = POOL_SIZE;
  h->items[0].size = ITEM_HDR + dlen;
  h->items[0].type = KDBUS_ITEM_CONN_DESCRIPTION;
  memcpy(h->items[0].str, desc, dlen);
  free(desc);
  if (ioctl(fd, KDBUS_CMD_HELLO, h) < 0) {
    e = errno;
    free(h);
    close(fd);
    return answer("err %s hello", ename(e));
  }
  uint64_t id = h->id;
  struct kdbus_cmd_free f = { .size = sizeof(f), .offset = h->offset };
  ioctl(fd, KDBUS_CMD_FREE, &f);
  free(h);
  const uint8_t *pool = mmap(NULL, POOL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  if (pool == MAP_FAILED) return answer("err %s mmap", ename(errno));

  char descHex[2 * 64 + 2], creatorHex[2 * 64 + 2];
  struct kdbus_cmd_info ci = { .size = sizeof(ci), .flags = KDBUS_ATTACH_CONN_DESCRIPTION, .id = id };
  if (ioctl(fd, KDBUS_CMD_CONN_INFO, &ci) < 0) return answer("err %s conn_info", ename(errno));
  info_item_hex(fd, pool, ci.offset, KDBUS_ITEM_CONN_DESCRIPTION, descHex, sizeof(descHex));
  struct kdbus_cmd_info bi = { .size = sizeof(bi) };
  if (ioctl(fd, KDBUS_CMD_BUS_CREATOR_INFO, &bi) < 0) return answer("err %s bus_creator_info", ename(errno));
  info_item_hex(fd, pool, bi.offset, KDBUS_ITEM_MAKE_NAME, creatorHex, sizeof(creatorHex));
  // the connection stays up until the process exits
  answer("ok id=%" PRIu64 " desc=%s creator=%s", id, descHex, creatorHex);
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  setvbuf(stdout, NULL, _IOLBF, 0);
  answer("ok ready pid=%d", (int)getpid());
  while ((len = getline(&line, &cap, stdin)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char *av[8];
    int ac = 0;
    for (char *tok = strtok(line, " "); tok && ac < 8; tok = strtok(NULL, " ")) av[ac++] = tok;
    if (ac == 0) continue;
    if (!strcmp(av[0], "make")) cmd_make(av, ac);
    else if (!strcmp(av[0], "hello")) cmd_hello(av, ac);
    else answer("err EINVAL unknown command %s", av[0]);
  }
  free(line);
  return 0;
}
