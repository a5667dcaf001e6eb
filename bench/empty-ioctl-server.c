// The baseline: the least a FUSE server can do for an ioctl. One file,
// "control", blocking reads, every ioctl answered at once with 0.
//
//   empty-ioctl-server DIR     (serves until DIR is unmounted)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int dev;

static void reply(uint64_t unique, int error, const void *data, size_t len) {
  struct fuse_out_header oh = {sizeof oh + len, error, unique};
  struct iovec iov[2] = {{&oh, sizeof oh}, {(void *)data, len}};
  if (writev(dev, iov, len ? 2 : 1) < 0 && errno != ENOENT) perror("reply");
}

static void attr(uint64_t ino, struct fuse_attr *a) {
  memset(a, 0, sizeof *a);
  a->ino = ino;
  a->mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0666;
  a->nlink = ino == FUSE_ROOT_ID ? 2 : 1;
  a->blksize = 4096;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (dev < 0) return perror("/dev/fuse"), 1;
  char opts[128];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40755,user_id=0,group_id=0,allow_other", dev);
  if (mount("emptyioctl", argv[1], "fuse.emptyioctl", MS_NOSUID | MS_NODEV, opts) < 0)
    return perror("mount"), 1;
  printf("ready\n");
  fflush(stdout);

  static uint8_t buf[FUSE_MIN_READ_BUFFER + 128 * 1024];
  for (;;) {
    ssize_t r = read(dev, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == ENODEV) return 0;  // unmounted
      return perror("read"), 1;
    }
    if ((size_t)r < sizeof(struct fuse_in_header)) continue;
    struct fuse_in_header *h = (void *)buf;
    void *in = buf + sizeof *h;
    switch (h->opcode) {
      case FUSE_INIT: {
        struct fuse_init_in *ii = in;
        struct fuse_init_out o = {0};
        o.major = FUSE_KERNEL_VERSION;
        o.minor = ii->minor < 38 ? ii->minor : 38;
        o.max_write = 128 * 1024;
        o.max_background = 16;
        o.congestion_threshold = 12;
        o.time_gran = 1;
        reply(h->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_LOOKUP: {
        if (h->nodeid != FUSE_ROOT_ID || strcmp(in, "control")) {
          reply(h->unique, -ENOENT, NULL, 0);
          break;
        }
        struct fuse_entry_out e = {0};
        e.nodeid = 2;
        attr(2, &e.attr);
        reply(h->unique, 0, &e, sizeof e);
        break;
      }
      case FUSE_GETATTR: {
        struct fuse_attr_out a = {0};
        attr(h->nodeid, &a.attr);
        reply(h->unique, 0, &a, sizeof a);
        break;
      }
      case FUSE_OPEN:
      case FUSE_OPENDIR: {
        struct fuse_open_out o = {0};
        o.fh = 1;
        reply(h->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_IOCTL: {
        struct fuse_ioctl_out o = {0};
        reply(h->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR:
      case FUSE_FLUSH:
        reply(h->unique, 0, NULL, 0);
        break;
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        break;
      default:
        reply(h->unique, -ENOSYS, NULL, 0);
    }
  }
}
