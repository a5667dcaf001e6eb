// A FUSE client for test/native.test.ts: each command does one thing on the
// mount from a real, separate process and prints what it saw as key=value.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <dirent.h>
#include <unistd.h>

// The shape of a kdbus command: a u64 size first, then the rest.
struct cmd {
  uint64_t size;
  uint64_t flags;
  uint64_t reply;   // the server writes here with memWrite
  uint64_t addr;    // a buffer of ours for the server to read
  uint64_t len;
  uint8_t payload[];
};
#define CMD_HEAD sizeof(struct cmd)
#define IOC(nr) _IOWR(0x95, nr, struct cmd)

static const char *err(int e) {
  switch (e) {
    case 0: return "0";
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EIO: return "EIO";
    case EINTR: return "EINTR";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ESHUTDOWN: return "ESHUTDOWN";
    case ENOTTY: return "ENOTTY";
    case EINVAL: return "EINVAL";
    case ENOTCONN: return "ENOTCONN";
    case ECONNABORTED: return "ECONNABORTED";
    default: return strerrorname_np(e) ? strerrorname_np(e) : "E?";
  }
}

static int open_or_report(const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) printf("open=%s\n", err(errno));
  else printf("open=0\n");
  fflush(stdout);
  return fd;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + seed);
}

static void hex(const char *key, const uint8_t *p, size_t n) {
  printf("%s=", key);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\n");
}

static void wait_line(void) {
  char buf[64];
  if (!fgets(buf, sizeof buf, stdin)) exit(3);
}

static void on_alarm(int sig) { (void)sig; }

static int do_ioctl(int fd, int nr, size_t payload, int use_buf) {
  static uint8_t buf[4096];
  struct cmd *c = calloc(1, CMD_HEAD + payload);
  c->size = CMD_HEAD + payload;
  c->flags = 0x1234;
  fill(c->payload, payload, 3);
  if (use_buf) {
    fill(buf, sizeof buf, 11);
    c->addr = (uintptr_t)buf;
    c->len = sizeof buf;
  }
  int r = ioctl(fd, IOC(nr), c);
  printf("ret=%d errno=%s reply=%llu\n", r, err(r < 0 ? errno : 0), (unsigned long long)c->reply);
  fflush(stdout);
  int ret = (int)c->reply;
  free(c);
  return ret;
}

int main(int argc, char **argv) {
  int a = 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (a + 1 < argc && !strcmp(argv[a], "-u")) {
    uid_t u = (uid_t)atoi(argv[a + 1]);
    if (setresgid(u, u, u) || setresuid(u, u, u)) { perror("setresuid"); return 2; }
    a += 2;
  }
  if (a + 1 >= argc) {
    fprintf(stderr, "usage: fuseclient [-u uid] CMD PATH [args]\n");
    return 2;
  }
  const char *cmd = argv[a], *path = argv[a + 1];
  char **args = argv + a + 2;
  printf("tid=%d\n", gettid());

  if (!strcmp(cmd, "stat")) {
    struct stat st;
    if (stat(path, &st) < 0) { printf("stat=%s\n", err(errno)); return 0; }
    printf("stat=0 mode=%o size=%lld nlink=%lu uid=%u gid=%u ino=%llu\n", st.st_mode,
           (long long)st.st_size, (unsigned long)st.st_nlink, st.st_uid, st.st_gid,
           (unsigned long long)st.st_ino);
  } else if (!strcmp(cmd, "ls")) {
    DIR *d = opendir(path);
    if (!d) { printf("ls=%s\n", err(errno)); return 0; }
    struct dirent *e;
    printf("ls=0\n");
    while ((e = readdir(d))) printf("entry=%s type=%d\n", e->d_name, e->d_type);
    closedir(d);
  } else if (!strcmp(cmd, "open")) {
    int fd = open_or_report(path, O_RDWR);
    if (fd >= 0) close(fd);
  } else if (!strcmp(cmd, "reopen")) {
    // A second open of the same inode, without a new LOOKUP.
    int fd = open_or_report(path, O_RDWR);
    if (fd < 0) return 0;
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    int fd2 = open_or_report(p, O_RDWR);
    if (fd2 >= 0) close(fd2);
    close(fd);
  } else if (!strcmp(cmd, "bindopen")) {
    // A bind-mounted single file pins one inode.
    const char *target = args[0];
    int t = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (t < 0 || close(t) || mount(path, target, NULL, MS_BIND, NULL)) { perror("bind"); return 2; }
    int fd = open_or_report(target, O_RDWR);
    int fd2 = open_or_report(target, O_RDWR);
    if (fd >= 0) close(fd);
    if (fd2 >= 0) close(fd2);
    umount2(target, MNT_DETACH);
  } else if (!strcmp(cmd, "pathopen")) {
    // Holds an instance (LOOKUP, no OPEN), then opens it once told to.
    int pfd = open(path, O_PATH | O_CLOEXEC);
    if (pfd < 0) { printf("opath=%s\n", err(errno)); return 0; }
    printf("ready\n");
    wait_line();
    struct stat st;
    printf("fstat=%s\n", err(fstat(pfd, &st) < 0 ? errno : 0));
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
    int fd = open_or_report(p, O_RDWR);
    if (fd >= 0) close(fd);
  } else if (!strcmp(cmd, "ioctl")) {
    int fd = open_or_report(path, O_RDWR);
    if (fd < 0) return 0;
    do_ioctl(fd, atoi(args[0]), (size_t)atoi(args[1]), 0);
    close(fd);
  } else if (!strcmp(cmd, "intr")) {
    // A blocked ioctl hit by a signal: the server sees FUSE_INTERRUPT.
    int fd = open_or_report(path, O_RDWR);
    if (fd < 0) return 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, NULL);
    do_ioctl(fd, atoi(args[0]), 0, 0);
    close(fd);
  } else if (!strcmp(cmd, "poll")) {
    int fd = open_or_report(path, O_RDWR);
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, atoi(args[0]));
    printf("poll=%d revents=%x\n", r, p.revents);
    close(fd);
  } else if (!strcmp(cmd, "pool")) {
    // HELLO-like: the server sets up the pool, writes into it and copies our
    // buffer into it; then we look through a read-only shared mapping.
    size_t size = strtoull(args[0], NULL, 0), off = strtoull(args[1], NULL, 0),
           len = strtoull(args[2], NULL, 0);
    int fd = open_or_report(path, O_RDWR);
    if (fd < 0) return 0;
    int copied_at = do_ioctl(fd, 1, 0, 1);
    uint8_t *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { printf("mmap=%s\n", err(errno)); return 0; }
    hex("at", m + off, len);
    uint8_t want[4096];
    fill(want, sizeof want, 11);
    printf("copy=%s\n", memcmp(m + copied_at, want, sizeof want) ? "mismatch" : "match");
    hex("last", m + size - 4, 4);
    hex("unflushed", m + (3 << 20), 9);
    // A second message after the first was seen: the new bytes must show too.
    do_ioctl(fd, 2, 0, 0);
    hex("again", m + off, len);
    munmap(m, size);
    close(fd);
  } else if (!strcmp(cmd, "cat")) {
    int fd = open_or_report(path, O_RDONLY);
    if (fd < 0) return 0;
    char buf[256];
    ssize_t r = read(fd, buf, sizeof buf - 1);
    if (r < 0) printf("read=%s\n", err(errno));
    else { buf[r] = 0; printf("read=0 data=%s\n", buf); }
    close(fd);
  } else if (!strcmp(cmd, "write")) {
    int fd = open_or_report(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return 0;
    ssize_t r = write(fd, args[0], strlen(args[0]));
    printf("write=%s n=%zd\n", err(r < 0 ? errno : 0), r);
    close(fd);
  } else if (!strcmp(cmd, "mkdir")) {
    printf("mkdir=%s\n", err(mkdir(path, 0755) < 0 ? errno : 0));
  } else {
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
  }
  return 0;
}
