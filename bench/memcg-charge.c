// memcg-charge: which memory cgroup Linux charges for pages of a memfd pool
// (issue #17: can the server charge pool memory to the user who caused
// it?). A process P in cgroup A makes a memfd and maps it shared, as the
// server does with a pool; then 16 MiB of fresh pages are written into it
// each of these ways, and the growth of A's and B's usage is printed:
//
//   pwrite-B      a separate process in cgroup B pwrite(2)s the memfd
//   map-B         a separate process in cgroup B writes through its own
//                 shared mapping of the memfd
//   clone-vm-B    a task made with clone(CLONE_VM | CLONE_FILES) (as the
//                 server's memory task, native/memtask.h), moved to B,
//                 writes through P's mapping
//   vm-writev-B   a separate process in B process_vm_writev(2)s into P's
//                 mapping (the server's copies into pools, done from B)
//   recharge-A    P's own task moves to B, then back: the pages written
//                 meanwhile (by P's mapping) stay where they were charged
//
//   memcg-charge A_DIR B_DIR      (memory cgroup directories, v1 or v2)
//
// Prints one line per way: "WAY A+=KiB B+=KiB". Needs root.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (16u << 20)
#define WAYS 5

static const char *dir_a, *dir_b;
static uint8_t *map;  // P's shared mapping of the memfd
static int memfd;

static long long usage(const char *dir) {
  char path[512], buf[64];
  // v2 memory.current, v1 memory.usage_in_bytes
  snprintf(path, sizeof(path), "%s/memory.current", dir);
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    snprintf(path, sizeof(path), "%s/memory.usage_in_bytes", dir);
    fd = open(path, O_RDONLY);
  }
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  return atoll(buf);
}

static void join_cgroup(const char *dir, pid_t pid) {
  char path[512], num[32];
  snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
  int fd = open(path, O_WRONLY);
  int n = snprintf(num, sizeof(num), "%d\n", (int)pid);
  if (fd < 0 || write(fd, num, (size_t)n) != n) {
    fprintf(stderr, "memcg-charge: joining %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  close(fd);
}

static void touch(uint8_t *p) {
  for (size_t i = 0; i < CHUNK; i += 4096) p[i] = 1;
}

static int clone_vm_main(void *arg) {
  size_t off = (size_t)(uintptr_t)arg;
  join_cgroup(dir_b, getpid());
  touch(map + off);
  return 0;
}

static void way(int k, size_t off) {
  pid_t parent = getpid();
  if (k == 2) {  // clone-vm-B: shares P's mm
    static uint8_t stack[64 * 1024];
    pid_t c = clone(clone_vm_main, stack + sizeof(stack), CLONE_VM | CLONE_FILES | SIGCHLD, (void *)(uintptr_t)off);
    if (c < 0 || waitpid(c, NULL, 0) < 0) exit(1);
    return;
  }
  if (k == 4) {  // recharge-A: P itself in B while it writes, then back in A
    join_cgroup(dir_b, parent);
    touch(map + off);
    join_cgroup(dir_a, parent);
    return;
  }
  pid_t c = fork();
  if (c < 0) exit(1);
  if (c == 0) {
    join_cgroup(dir_b, getpid());
    static uint8_t buf[CHUNK];
    memset(buf, 1, sizeof(buf));
    if (k == 0) {
      if (pwrite(memfd, buf, CHUNK, (off_t)off) != (ssize_t)CHUNK) _exit(1);
    } else if (k == 1) {
      uint8_t *own = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, (off_t)off);
      if (own == MAP_FAILED) _exit(1);
      touch(own);
    } else {
      struct iovec local = { buf, CHUNK }, remote = { map + off, CHUNK };
      if (process_vm_writev(parent, &local, 1, &remote, 1, 0) != (ssize_t)CHUNK) _exit(1);
    }
    _exit(0);
  }
  int st;
  if (waitpid(c, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
    fprintf(stderr, "memcg-charge: way %d failed\n", k);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: memcg-charge A_DIR B_DIR\n");
    return 2;
  }
  dir_a = argv[1];
  dir_b = argv[2];
  join_cgroup(dir_a, getpid());
  memfd = memfd_create("memcg-charge-pool", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, (off_t)CHUNK * WAYS) < 0) return 1;
  map = mmap(NULL, (size_t)CHUNK * WAYS, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (map == MAP_FAILED) return 1;
  static const char *names[WAYS] = { "pwrite-B", "map-B", "clone-vm-B", "vm-writev-B", "recharge-A" };
  for (int k = 0; k < WAYS; k++) {
    long long a0 = usage(dir_a), b0 = usage(dir_b);
    way(k, (size_t)k * CHUNK);
    long long a1 = usage(dir_a), b1 = usage(dir_b);
    printf("%s A+=%lld KiB B+=%lld KiB (of %u KiB written)\n", names[k], (a1 - a0) / 1024, (b1 - b0) / 1024,
           CHUNK / 1024);
  }
  // the pages stay charged where they were while the memfd lives
  long long a0 = usage(dir_a), b0 = usage(dir_b);
  munmap(map, (size_t)CHUNK * WAYS);
  close(memfd);
  printf("freed A-=%lld KiB B-=%lld KiB\n", (a0 - usage(dir_a)) / 1024, (b0 - usage(dir_b)) / 1024);
  return 0;
}
