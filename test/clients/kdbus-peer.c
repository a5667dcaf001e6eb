// kdbus-peer: one kdbus peer per process, for test/integration.test.ts.
//
// Written against include/uapi/linux/kdbus.h only (built with -I.../uapi).
// The process reads one command per line on stdin and answers each with
// exactly one line on stdout: "ok key=value ..." or "err ENAME key=value ...".
// It holds at most one control fd (a bus it made) and one connection.
//
// Payload bytes follow one pattern over the whole payload stream of a message
// (all vectors and memfds in order, NULL vectors excluded): byte k of the
// stream is pat(cookie, k). The receiver checks every byte it finds against
// that pattern and also reports an FNV-1a hash of the stream, so the test can
// compare what was sent with what arrived.
//
// Commands (tokens separated by single spaces):
//   setuid UID GID                 drop to UID/GID (real, effective, saved)
//   make CONTROL NAME ACCESS BLOOMSIZE NHASH   BUS_MAKE; ACCESS: world|group|none
//   unmake                         close the control fd
//   hello BUS [POOLSIZE]           open BUS, HELLO, mmap the pool, read the
//                                  BLOOM_PARAMETER at hello.offset, FREE it
//   hello-unaligned BUS            HELLO from a pointer that is 4 mod 8, then
//                                  again from an aligned one on the same fd;
//                                  the fd is closed afterwards
//   match COOKIE RULE...           MATCH_ADD; RULE: id-add | id-remove |
//                                  bloom:all | bloom:HEX (mask word 0)
//   send DST OPT...                DST: a connection id or "bcast"; OPT:
//                                  cookie:N prio:N signal bloom:HEX vec:SIZE
//                                  null:SIZE memfd:SIZE[:START]
//                                  memfd-unsealed:SIZE memfd-someseals:SIZE
//                                  badaddr (msg_address on an unmapped page)
//   recv [peek] [drop] [prio:N] [wait:MS]      RECV (wait: poll() first)
//   drain                          RECV + FREE until EAGAIN
//   free OFFSET                    KDBUS_CMD_FREE
//   poll MS                        poll(POLLIN) on the connection
//   spam DST SIZE                  send to DST forever (answers once, first)
//   bye                            munmap and close the connection
//   exit
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <linux/kdbus.h>

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)
#define ITEM_HDR offsetof(struct kdbus_item, data)
#define ITEM_NEXT(it) ((struct kdbus_item *)((uint8_t *)(it) + ALIGN8((it)->size)))
#define MAX_PARTS 64

static int ctl_fd = -1;
static int conn_fd = -1;
static uint8_t *pool;
static uint64_t pool_size;
static uint64_t my_id;
static uint64_t bloom_size = 8;

static const char *ename(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "E?";
}

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void answer(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

// ---- the payload pattern and stream hash ----

static inline uint8_t pat(uint64_t seed, uint64_t k) {
  return (uint8_t)(k * 131 + (k >> 8) * 7 + (k >> 16) * 13 + seed * 17 + 1);
}

struct stream {
  uint64_t seed, size, hash, bad_at;
  int bad;
};

static void stream_init(struct stream *s, uint64_t seed) {
  memset(s, 0, sizeof(*s));
  s->seed = seed;
  s->hash = 0xcbf29ce484222325ULL;
}

static void stream_feed(struct stream *s, const uint8_t *p, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    s->hash = (s->hash ^ p[i]) * 0x100000001b3ULL;
    if (!s->bad && p[i] != pat(s->seed, s->size + i)) {
      s->bad = 1;
      s->bad_at = s->size + i;
    }
  }
  s->size += n;
}

// ---- items ----

static struct kdbus_item *item_put(struct kdbus_item *it, uint64_t type, const void *data, uint64_t len) {
  it->size = ITEM_HDR + len;
  it->type = type;
  if (data) memcpy(it->data, data, len);
  else memset(it->data, 0, len);
  return ITEM_NEXT(it);
}

// ---- commands ----

static void cmd_setuid(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  uid_t uid = (uid_t)strtoul(av[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(av[2], NULL, 10);
  if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
    return answer("err %s setuid", ename(errno));
  answer("ok euid=%u egid=%u", (unsigned)geteuid(), (unsigned)getegid());
}

static void cmd_make(char **av, int ac) {
  if (ac < 6) return answer("err EINVAL usage");
  const char *name = av[2];
  uint64_t flags = 0;
  if (!strcmp(av[3], "world")) flags = KDBUS_MAKE_ACCESS_WORLD;
  else if (!strcmp(av[3], "group")) flags = KDBUS_MAKE_ACCESS_GROUP;
  struct kdbus_bloom_parameter bp = { strtoull(av[4], NULL, 0), strtoull(av[5], NULL, 0) };
  size_t nlen = strlen(name) + 1;
  size_t size = sizeof(struct kdbus_cmd_make) + ALIGN8(ITEM_HDR + sizeof(bp)) + ALIGN8(ITEM_HDR + nlen);
  struct kdbus_cmd_make *cmd = calloc(1, size);
  cmd->size = size;
  cmd->flags = flags;
  struct kdbus_item *it = cmd->items;
  it = item_put(it, KDBUS_ITEM_BLOOM_PARAMETER, &bp, sizeof(bp));
  item_put(it, KDBUS_ITEM_MAKE_NAME, name, nlen);
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    free(cmd);
    return answer("err %s open", ename(errno));
  }
  if (ioctl(fd, KDBUS_CMD_BUS_MAKE, cmd) < 0) {
    int e = errno;
    close(fd);
    free(cmd);
    return answer("err %s bus_make", ename(e));
  }
  free(cmd);
  if (ctl_fd >= 0) close(ctl_fd);
  ctl_fd = fd;
  answer("ok name=%s", name);
}

static void cmd_unmake(void) {
  if (ctl_fd < 0) return answer("err EBADF no control fd");
  close(ctl_fd);
  ctl_fd = -1;
  answer("ok");
}

static int do_free(uint64_t off) {
  struct kdbus_cmd_free f;
  memset(&f, 0, sizeof(f));
  f.size = sizeof(f);
  f.offset = off;
  return ioctl(conn_fd, KDBUS_CMD_FREE, &f) < 0 ? errno : 0;
}

static void fill_hello(struct kdbus_cmd_hello *h, uint64_t psize) {
  memset(h, 0, sizeof(*h));
  h->size = sizeof(*h);
  h->flags = KDBUS_HELLO_ACCEPT_FD;
  h->attach_flags_send = _KDBUS_ATTACH_ANY;
  h->attach_flags_recv = 0;
  h->pool_size = psize;
}

static void cmd_hello(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd >= 0) return answer("err EALREADY connected");
  uint64_t psize = ac > 2 ? strtoull(av[2], NULL, 0) : 16ULL << 20;
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  struct kdbus_cmd_hello h;
  fill_hello(&h, psize);
  if (ioctl(fd, KDBUS_CMD_HELLO, &h) < 0) {
    int e = errno;
    close(fd);
    return answer("err %s hello", ename(e));
  }
  void *p = mmap(NULL, psize, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return answer("err %s mmap", ename(e));
  }
  conn_fd = fd;
  pool = p;
  pool_size = psize;
  my_id = h.id;
  // At hello.offset: a struct kdbus_item_list holding the BLOOM_PARAMETER.
  uint64_t bsize = 0, nhash = 0;
  int found = 0;
  if (h.offset + sizeof(uint64_t) <= psize) {
    const struct kdbus_item_list *list = (const void *)(pool + h.offset);
    uint64_t lsize = list->size;
    if (lsize <= psize - h.offset) {
      const uint8_t *end = (const uint8_t *)list + lsize;
      for (const struct kdbus_item *it = list->items;
           (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR;
           it = ITEM_NEXT(it)) {
        if (it->type == KDBUS_ITEM_BLOOM_PARAMETER && it->size >= ITEM_HDR + sizeof(struct kdbus_bloom_parameter)) {
          bsize = it->bloom_parameter.size;
          nhash = it->bloom_parameter.n_hash;
          found++;
        }
      }
    }
  }
  if (found) bloom_size = bsize;
  char uuid[33];
  for (int i = 0; i < 16; i++) sprintf(uuid + 2 * i, "%02x", h.id128[i]);
  int fe = do_free(h.offset);
  answer("ok id=%" PRIu64 " bus_flags=%" PRIu64 " offset=%" PRIu64 " items_size=%" PRIu64
         " bloom_items=%d bloom_size=%" PRIu64 " bloom_n_hash=%" PRIu64 " id128=%s free=%s",
         (uint64_t)h.id, (uint64_t)h.bus_flags, (uint64_t)h.offset, (uint64_t)h.items_size, found, bsize, nhash, uuid, fe ? ename(fe) : "0");
}

static void cmd_hello_unaligned(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  int fd = open(av[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return answer("err %s open", ename(errno));
  struct kdbus_cmd_hello h;
  fill_hello(&h, 16ULL << 20);
  uint64_t *buf = calloc(1, sizeof(h) + 16);   // malloc memory is 16-aligned
  uint8_t *odd = (uint8_t *)buf + 4;            // 4 mod 8
  memcpy(odd, &h, sizeof(h));
  int r1 = ioctl(fd, KDBUS_CMD_HELLO, odd);
  int e1 = r1 < 0 ? errno : 0;
  free(buf);
  fill_hello(&h, 16ULL << 20);
  int r2 = ioctl(fd, KDBUS_CMD_HELLO, &h);
  int e2 = r2 < 0 ? errno : 0;
  close(fd);
  answer("%s %s aligned=%s aligned_id=%" PRIu64 "", e1 ? "err" : "ok", e1 ? ename(e1) : "0",
         e2 ? ename(e2) : "0", e2 ? 0 : (uint64_t)h.id);
}

static int match_add(uint64_t cookie, char **rules, int n) {
  size_t size = sizeof(struct kdbus_cmd_match);
  for (int i = 0; i < n; i++) {
    if (!strncmp(rules[i], "bloom:", 6)) size += ALIGN8(ITEM_HDR + bloom_size);
    else size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_notify_id_change));
  }
  struct kdbus_cmd_match *m = calloc(1, size);
  m->size = size;
  m->cookie = cookie;
  struct kdbus_item *it = m->items;
  for (int i = 0; i < n; i++) {
    if (!strncmp(rules[i], "bloom:", 6)) {
      uint8_t *mask = calloc(1, bloom_size);
      if (!strcmp(rules[i] + 6, "all")) memset(mask, 0xff, bloom_size);
      else {
        uint64_t w = strtoull(rules[i] + 6, NULL, 16);
        memcpy(mask, &w, sizeof(w));
      }
      it = item_put(it, KDBUS_ITEM_BLOOM_MASK, mask, bloom_size);
      free(mask);
    } else {
      struct kdbus_notify_id_change c = { KDBUS_MATCH_ID_ANY, 0 };
      it = item_put(it, !strcmp(rules[i], "id-add") ? KDBUS_ITEM_ID_ADD : KDBUS_ITEM_ID_REMOVE, &c, sizeof(c));
    }
  }
  int r = ioctl(conn_fd, KDBUS_CMD_MATCH_ADD, m) < 0 ? errno : 0;
  free(m);
  return r;
}

static void cmd_match(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  int e = match_add(strtoull(av[1], NULL, 0), av + 2, ac - 2);
  if (e) return answer("err %s match_add", ename(e));
  answer("ok");
}

struct part {
  int kind;   // 0 vec, 1 null vec, 2 memfd
  uint64_t size, start;
  uint8_t *buf;
  int fd;
};

// Builds and sends one message; returns 0 or an errno. Fills *st with the
// stream that was sent.
static int send_msg(char **opts, int n, uint64_t dst, struct stream *st) {
  uint64_t cookie = 0, flags = 0, bloom_word = 0;
  int64_t prio = 0;
  int has_bloom = 0, badaddr = 0, nparts = 0, err = 0;
  struct part parts[MAX_PARTS];
  for (int i = 0; i < n; i++) {
    char *o = opts[i];
    if (!strncmp(o, "cookie:", 7)) cookie = strtoull(o + 7, NULL, 0);
    else if (!strncmp(o, "prio:", 5)) prio = strtoll(o + 5, NULL, 0);
    else if (!strcmp(o, "signal")) flags |= KDBUS_MSG_SIGNAL;
    else if (!strncmp(o, "bloom:", 6)) { has_bloom = 1; bloom_word = strtoull(o + 6, NULL, 16); }
    else if (!strcmp(o, "badaddr")) badaddr = 1;
    else if (nparts < MAX_PARTS) {
      struct part *p = &parts[nparts];
      memset(p, 0, sizeof(*p));
      p->fd = -1;
      char *colon = strchr(o, ':');
      if (!colon) return EINVAL;
      p->size = strtoull(colon + 1, &colon, 0);
      if (*colon == ':') p->start = strtoull(colon + 1, NULL, 0);
      if (!strncmp(o, "vec:", 4)) p->kind = 0;
      else if (!strncmp(o, "null:", 5)) p->kind = 1;
      else if (!strncmp(o, "memfd:", 6)) p->kind = 2;
      else if (!strncmp(o, "memfd-unsealed:", 15)) p->kind = 3;
      else if (!strncmp(o, "memfd-someseals:", 16)) p->kind = 4;
      else return EINVAL;
      nparts++;
    }
  }
  stream_init(st, cookie);
  // Fill every part with its slice of the stream pattern.
  for (int i = 0; i < nparts && !err; i++) {
    struct part *p = &parts[i];
    if (p->kind == 1) continue;
    uint64_t total = p->start + p->size;
    p->buf = malloc(total ? total : 1);
    memset(p->buf, 0xee, p->start);
    for (uint64_t k = 0; k < p->size; k++) p->buf[p->start + k] = pat(cookie, st->size + k);
    stream_feed(st, p->buf + p->start, p->size);
    if (p->kind >= 2) {
      p->fd = memfd_create("kdbus-peer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
      if (p->fd < 0) { err = errno; break; }
      for (uint64_t w = 0; w < total;) {
        ssize_t r = write(p->fd, p->buf + w, total - w);
        if (r <= 0) { err = r < 0 ? errno : EIO; break; }
        w += (uint64_t)r;
      }
      int seals = p->kind == 2 ? (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
                : p->kind == 4 ? (F_SEAL_SHRINK | F_SEAL_GROW) : 0;
      if (!err && seals && fcntl(p->fd, F_ADD_SEALS, seals) < 0) err = errno;
    }
  }
  size_t size = sizeof(struct kdbus_msg);
  for (int i = 0; i < nparts; i++)
    size += ALIGN8(ITEM_HDR + (parts[i].kind <= 1 ? sizeof(struct kdbus_vec) : sizeof(struct kdbus_memfd)));
  if (has_bloom) size += ALIGN8(ITEM_HDR + sizeof(struct kdbus_bloom_filter) + bloom_size);
  struct kdbus_msg *m = calloc(1, size);
  if (!err) {
    m->size = size;
    m->flags = flags;
    m->priority = prio;
    m->dst_id = dst;
    m->payload_type = KDBUS_PAYLOAD_DBUS;
    m->cookie = cookie;
    struct kdbus_item *it = m->items;
    for (int i = 0; i < nparts; i++) {
      struct part *p = &parts[i];
      if (p->kind <= 1) {
        struct kdbus_vec v = { .size = p->size, .address = p->kind == 1 ? 0 : (uintptr_t)p->buf };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_VEC, &v, sizeof(v));
      } else {
        struct kdbus_memfd mf = { .start = p->start, .size = p->size, .fd = p->fd };
        it = item_put(it, KDBUS_ITEM_PAYLOAD_MEMFD, &mf, sizeof(mf));
      }
    }
    if (has_bloom) {
      size_t blen = sizeof(struct kdbus_bloom_filter) + bloom_size;
      struct kdbus_bloom_filter *bf = calloc(1, blen);
      bf->generation = 0;
      bf->data[0] = bloom_word;
      item_put(it, KDBUS_ITEM_BLOOM_FILTER, bf, blen);
      free(bf);
    }
    struct kdbus_cmd_send cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.size = sizeof(cmd);
    cmd.msg_address = (uintptr_t)m;
    void *hole = NULL;
    if (badaddr) {
      // A page that was mapped and is not any more: nothing lives there.
      hole = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      munmap(hole, 4096);
      cmd.msg_address = (uintptr_t)hole;
    }
    if (ioctl(conn_fd, KDBUS_CMD_SEND, &cmd) < 0) err = errno;
  }
  free(m);
  for (int i = 0; i < nparts; i++) {
    free(parts[i].buf);
    if (parts[i].fd >= 0) close(parts[i].fd);
  }
  return err;
}

static uint64_t parse_dst(const char *s) {
  return !strcmp(s, "bcast") ? KDBUS_DST_ID_BROADCAST : strtoull(s, NULL, 0);
}

static void cmd_send(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct stream st;
  int e = send_msg(av + 2, ac - 2, parse_dst(av[1]), &st);
  if (e) return answer("err %s send", ename(e));
  answer("ok stream=%" PRIu64 ":%016" PRIx64, st.size, st.hash);
}

struct got {
  uint64_t off, slice, msize, src, dst, cookie, flags, ptype;
  int64_t prio;
  char notify[64];
  char parts[1024];
  char types[512];
  struct stream st;
  int oob;
};

// Parses the message at off in the pool; payload bytes are checked against
// the pattern seeded with the message's cookie.
static void parse_msg(uint64_t off, struct got *g) {
  const struct kdbus_msg *m = (const void *)(pool + off);
  g->msize = m->size;
  g->src = m->src_id;
  g->dst = m->dst_id;
  g->cookie = m->cookie;
  g->flags = m->flags;
  g->ptype = m->payload_type;
  g->prio = m->priority;
  g->notify[0] = g->parts[0] = g->types[0] = 0;
  stream_init(&g->st, m->cookie);
  if (m->size < sizeof(*m) || m->size > pool_size - off) {
    g->oob = 1;
    return;
  }
  const uint8_t *end = (const uint8_t *)m + m->size;
  size_t pl = 0, tl = 0;
  for (const struct kdbus_item *it = m->items;
       (const uint8_t *)it + ITEM_HDR <= end && it->size >= ITEM_HDR && (const uint8_t *)it + it->size <= end;
       it = ITEM_NEXT(it)) {
    tl += snprintf(g->types + tl, sizeof(g->types) - tl, "%s%" PRIx64, tl ? "," : "", (uint64_t)it->type);
    if (tl >= sizeof(g->types)) tl = sizeof(g->types) - 1;
    switch (it->type) {
    case KDBUS_ITEM_PAYLOAD_OFF: {
      uint64_t o = it->vec.offset, n = it->vec.size;
      if (o == ~0ULL) {
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%snull:%" PRIu64, pl ? "," : "", n);
      } else if (o > pool_size || n > pool_size - o) {
        g->oob = 1;
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%soob:%" PRIu64, pl ? "," : "", n);
      } else {
        stream_feed(&g->st, pool + o, n);
        pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%soff:%" PRIu64, pl ? "," : "", n);
      }
      break;
    }
    case KDBUS_ITEM_PAYLOAD_MEMFD: {
      uint64_t n = it->memfd.size, s = it->memfd.start;
      int fd = it->memfd.fd;
      uint8_t *b = malloc(n ? n : 1);
      ssize_t r = fd >= 0 ? pread(fd, b, n, (off_t)s) : -1;
      if (r == (ssize_t)n) stream_feed(&g->st, b, n);
      else g->oob = 1;
      free(b);
      if (fd >= 0) close(fd);
      pl += snprintf(g->parts + pl, sizeof(g->parts) - pl, "%smemfd:%" PRIu64, pl ? "," : "", n);
      break;
    }
    case KDBUS_ITEM_ID_ADD:
    case KDBUS_ITEM_ID_REMOVE:
      snprintf(g->notify, sizeof(g->notify), "%s:%" PRIu64 ":%" PRIu64,
               it->type == KDBUS_ITEM_ID_ADD ? "id-add" : "id-remove",
               (uint64_t)it->id_change.id, (uint64_t)it->id_change.flags);
      break;
    default:
      break;
    }
    if (pl >= sizeof(g->parts)) pl = sizeof(g->parts) - 1;
  }
}

static int wait_in(int ms) {
  struct pollfd p = { conn_fd, POLLIN, 0 };
  return poll(&p, 1, ms);
}

static void cmd_recv(char **av, int ac) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  struct kdbus_cmd_recv r;
  memset(&r, 0, sizeof(r));
  r.size = sizeof(r);
  for (int i = 1; i < ac; i++) {
    if (!strcmp(av[i], "peek")) r.flags |= KDBUS_RECV_PEEK;
    else if (!strcmp(av[i], "drop")) r.flags |= KDBUS_RECV_DROP;
    else if (!strncmp(av[i], "prio:", 5)) {
      r.flags |= KDBUS_RECV_USE_PRIORITY;
      r.priority = !strcmp(av[i] + 5, "max") ? INT64_MAX : strtoll(av[i] + 5, NULL, 0);
    } else if (!strncmp(av[i], "wait:", 5)) wait_in(atoi(av[i] + 5));
  }
  if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) {
    int e = errno;
    return answer("err %s dropped=%" PRIu64, ename(e), (uint64_t)r.dropped_msgs);
  }
  if (r.flags & KDBUS_RECV_DROP) return answer("ok dropped=1");
  struct got g;
  memset(&g, 0, sizeof(g));
  if (r.msg.offset >= pool_size) return answer("err ERANGE off=%" PRIu64, (uint64_t)r.msg.offset);
  parse_msg(r.msg.offset, &g);
  char dst[24];
  if (g.dst == KDBUS_DST_ID_BROADCAST) strcpy(dst, "bcast");
  else snprintf(dst, sizeof(dst), "%" PRIu64, g.dst);
  answer("ok off=%" PRIu64 " msize=%" PRIu64 " slice=%" PRIu64 " src=%" PRIu64 " dst=%s cookie=%" PRIu64
         " prio=%" PRId64 " flags=%" PRIu64 " ptype=%s notify=%s parts=%s types=%s stream=%" PRIu64 ":%016" PRIx64
         " pattern=%s%.0" PRIu64 " inpool=%s",
         (uint64_t)r.msg.offset, g.msize, (uint64_t)r.msg.msg_size, g.src, dst, g.cookie, g.prio, g.flags,
         g.ptype == KDBUS_PAYLOAD_KERNEL ? "kernel" : g.ptype == KDBUS_PAYLOAD_DBUS ? "dbus" : "other",
         g.notify[0] ? g.notify : "-", g.parts[0] ? g.parts : "-", g.types[0] ? g.types : "-",
         g.st.size, g.st.hash, g.st.bad ? "bad@" : "ok", g.st.bad ? g.st.bad_at : 0,
         g.oob ? "no" : "yes");
}

static void cmd_drain(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  unsigned n = 0, bad = 0;
  uint64_t last_cookie = 0, last_src = 0;
  for (;;) {
    struct kdbus_cmd_recv r;
    memset(&r, 0, sizeof(r));
    r.size = sizeof(r);
    if (ioctl(conn_fd, KDBUS_CMD_RECV, &r) < 0) {
      int e = errno;
      if (e == EAGAIN) break;
      return answer("err %s n=%u", ename(e), n);
    }
    struct got g;
    memset(&g, 0, sizeof(g));
    parse_msg(r.msg.offset, &g);
    if (g.st.bad || g.oob) bad++;
    last_cookie = g.cookie;
    last_src = g.src;
    n++;
    int fe = do_free(r.msg.offset);
    if (fe) return answer("err %s free n=%u", ename(fe), n);
  }
  answer("ok n=%u bad=%u last_cookie=%" PRIu64 " last_src=%" PRIu64, n, bad, last_cookie, last_src);
}

static void cmd_free(char **av, int ac) {
  if (ac < 2) return answer("err EINVAL usage");
  int e = do_free(strtoull(av[1], NULL, 0));
  if (e) return answer("err %s free", ename(e));
  answer("ok");
}

static void cmd_poll(char **av, int ac) {
  struct pollfd p = { conn_fd, POLLIN, 0 };
  int r = poll(&p, 1, ac > 1 ? atoi(av[1]) : 1000);
  if (r < 0) return answer("err %s poll", ename(errno));
  if (r == 0) return answer("ok timeout revents=0x0");
  answer("ok ready revents=0x%x", (unsigned)p.revents);
}

static void cmd_spam(char **av, int ac) {
  if (ac < 3) return answer("err EINVAL usage");
  uint64_t dst = parse_dst(av[1]);
  char vec[64], cookie[64];
  snprintf(vec, sizeof(vec), "vec:%s", av[2]);
  for (uint64_t c = 1;; c++) {
    snprintf(cookie, sizeof(cookie), "cookie:%" PRIu64, c);
    char *opts[] = { cookie, vec };
    struct stream st;
    int e = send_msg(opts, 2, dst, &st);
    if (c == 1) answer("ok spamming first=%s", e ? ename(e) : "0");
    usleep(200);
  }
}

static void cmd_bye(void) {
  if (conn_fd < 0) return answer("err ENOTCONN not connected");
  munmap(pool, pool_size);
  close(conn_fd);
  conn_fd = -1;
  pool = NULL;
  answer("ok");
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  setvbuf(stdout, NULL, _IOLBF, 0);
  answer("ok ready pid=%d", (int)getpid());
  while ((len = getline(&line, &cap, stdin)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char *av[80];
    int ac = 0;
    for (char *tok = strtok(line, " "); tok && ac < 80; tok = strtok(NULL, " ")) av[ac++] = tok;
    if (ac == 0) continue;
    const char *c = av[0];
    if (!strcmp(c, "setuid")) cmd_setuid(av, ac);
    else if (!strcmp(c, "make")) cmd_make(av, ac);
    else if (!strcmp(c, "unmake")) cmd_unmake();
    else if (!strcmp(c, "hello")) cmd_hello(av, ac);
    else if (!strcmp(c, "hello-unaligned")) cmd_hello_unaligned(av, ac);
    else if (!strcmp(c, "match")) cmd_match(av, ac);
    else if (!strcmp(c, "send")) cmd_send(av, ac);
    else if (!strcmp(c, "recv")) cmd_recv(av, ac);
    else if (!strcmp(c, "drain")) cmd_drain();
    else if (!strcmp(c, "free")) cmd_free(av, ac);
    else if (!strcmp(c, "poll")) cmd_poll(av, ac);
    else if (!strcmp(c, "spam")) cmd_spam(av, ac);
    else if (!strcmp(c, "bye")) cmd_bye();
    else if (!strcmp(c, "exit")) break;
    else answer("err EINVAL unknown command %s", c);
  }
  free(line);
  return 0;
}
