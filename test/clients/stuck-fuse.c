// stuck-fuse: a FUSE file system whose READs are never answered, as a
// hostile user would mount one (fusermount3 is setuid on stock systems;
// here the test runs this as root and lets the attacker's uid in with
// user_id and allow_other). Speaks the FUSE protocol on /dev/fuse itself.
//
//   stuck-fuse DIR UID [hold-flush]
//
// DIR holds one file, "file" (1 MiB, mode 0666, owned by UID). LOOKUP,
// GETATTR, OPEN, FLUSH, RELEASE are answered; a READ is not: whatever
// faults a page of a mapping of the file in waits until this process goes
// (closing /dev/fuse aborts the connection: the waiting READs fail). It
// prints "ok ready" once mounted and "read OFFSET" per READ it holds; on
// SIGTERM or stdin's end it unmounts DIR (lazily) and exits. With
// hold-flush, FLUSH is not answered either ("flush" printed per FLUSH held):
// every close(2) of an fd of the file then waits for this process (once it
// has read the FLUSH, uninterruptibly).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <pthread.h>

#include <linux/fuse.h>

#define FILE_INO 2
#define FILE_SIZE (1u << 20)

static const char *dir;
static unsigned uid;
static int hold_flush;
static int dev = -1;

static void leave(int sig) {
  (void)sig;
  umount2(dir, MNT_DETACH);
  _exit(0);
}

static void *watch_stdin(void *arg) {
  (void)arg;
  char c;
  while (read(0, &c, 1) > 0) {
  }
  leave(0);
  return NULL;
}

static void reply(uint64_t unique, int error, const void *data, size_t len) {
  struct fuse_out_header oh = { .len = (uint32_t)(sizeof(oh) + len), .error = error, .unique = unique };
  struct iovec iov[2] = { { &oh, sizeof(oh) }, { (void *)data, len } };
  if (writev(dev, iov, len ? 2 : 1) < 0 && errno != ENOENT) perror("stuck-fuse: reply");
}

static void attr_of(uint64_t ino, struct fuse_attr *a) {
  memset(a, 0, sizeof(*a));
  a->ino = ino;
  a->nlink = 1;
  a->uid = ino == FILE_INO ? uid : 0;
  a->gid = ino == FILE_INO ? uid : 0;
  a->blksize = 4096;
  if (ino == FILE_INO) {
    a->mode = S_IFREG | 0666;
    a->size = FILE_SIZE;
    a->blocks = FILE_SIZE / 512;
  } else {
    a->mode = S_IFDIR | 0755;
    a->nlink = 2;
  }
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "hold-flush") != 0)) {
    fprintf(stderr, "usage: stuck-fuse DIR UID [hold-flush]\n");
    return 2;
  }
  dir = argv[1];
  uid = (unsigned)atoi(argv[2]);
  hold_flush = argc == 4;
  dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    printf("err %s open /dev/fuse\n", strerror(errno));
    return 1;
  }
  char opts[256];
  snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other", dev, uid, uid);
  if (mount("stuck-fuse", dir, "fuse.stuck", MS_NOSUID | MS_NODEV, opts) < 0) {
    printf("err %s mount\n", strerror(errno));
    return 1;
  }
  signal(SIGTERM, leave);
  signal(SIGINT, leave);
  pthread_t th;
  pthread_create(&th, NULL, watch_stdin, NULL);
  printf("ok ready\n");
  fflush(stdout);

  static uint8_t buf[FUSE_MIN_READ_BUFFER + 256 * 1024];
  for (;;) {
    ssize_t n = read(dev, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == ENODEV) return 0;  // unmounted
      perror("stuck-fuse: read");
      return 1;
    }
    struct fuse_in_header *h = (struct fuse_in_header *)buf;
    void *in = buf + sizeof(*h);
    switch (h->opcode) {
      case FUSE_INIT: {
        const struct fuse_init_in *ii = in;
        struct fuse_init_out o;
        memset(&o, 0, sizeof(o));
        o.major = FUSE_KERNEL_VERSION;
        o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
        o.max_readahead = ii->max_readahead;
        o.max_background = 16;
        o.congestion_threshold = 12;
        o.max_write = 4096;
        o.time_gran = 1;
        reply(h->unique, 0, &o, sizeof(o));
        break;
      }
      case FUSE_LOOKUP: {
        if (h->nodeid != FUSE_ROOT_ID || strcmp((const char *)in, "file") != 0) {
          reply(h->unique, -ENOENT, NULL, 0);
          break;
        }
        struct fuse_entry_out e;
        memset(&e, 0, sizeof(e));
        e.nodeid = FILE_INO;
        e.generation = 1;
        e.entry_valid = 3600;
        e.attr_valid = 3600;
        attr_of(FILE_INO, &e.attr);
        reply(h->unique, 0, &e, sizeof(e));
        break;
      }
      case FUSE_GETATTR: {
        struct fuse_attr_out a;
        memset(&a, 0, sizeof(a));
        a.attr_valid = 3600;
        attr_of(h->nodeid, &a.attr);
        reply(h->unique, 0, &a, sizeof(a));
        break;
      }
      case FUSE_OPEN:
      case FUSE_OPENDIR: {
        struct fuse_open_out o;
        memset(&o, 0, sizeof(o));
        o.fh = 1;
        reply(h->unique, 0, &o, sizeof(o));
        break;
      }
      case FUSE_READ: {
        const struct fuse_read_in *r = in;
        printf("read %llu\n", (unsigned long long)r->offset);  // held: never answered
        fflush(stdout);
        break;
      }
      case FUSE_FLUSH:
        if (hold_flush) {
          printf("flush\n");  // held: never answered
          fflush(stdout);
          break;
        }
        reply(h->unique, 0, NULL, 0);
        break;
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR:
      case FUSE_ACCESS:
        reply(h->unique, 0, NULL, 0);
        break;
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        break;  // no answer
      case FUSE_DESTROY:
        reply(h->unique, 0, NULL, 0);
        return 0;
      default:
        reply(h->unique, -ENOSYS, NULL, 0);
    }
  }
}
