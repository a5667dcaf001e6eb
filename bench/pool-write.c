/*
 * How the server should write a client's bytes into a pool (a memfd the
 * server also maps): us per copy of SIZE KiB from another process's memory,
 * each way the server could do it, into fresh pool pages (a new connection,
 * or a pool's first pass) and into pages it wrote before (slices reused).
 *
 *   gcc -O2 -o /tmp/pool-write bench/pool-write.c && taskset -c 0 /tmp/pool-write [SIZE_KIB...]
 *
 * Ways:
 *   mapping:           process_vm_readv straight into the server's mapping
 *   populate+mapping:  MADV_POPULATE_WRITE on the range first, then the same
 *                      (kdbusfs before 2026-12-08, through a second mapping)
 *   bounce+pwrite:     process_vm_readv into a private buffer, then pwrite
 *                      into the memfd (kdbusfs now: memtask::ReadIntoFile)
 * On a paravirtualized guest the first touch of each page through a mapping
 * costs an exit to the host; pwrite copies through the kernel's own mapping.
 * Prints a markdown table; medians of 5 runs of 40 copies each.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

enum { COPIES = 40, RUNS = 5, WAYS = 3 };
static const char *const way_name[WAYS] = {"mapping", "populate+mapping", "bounce+pwrite"};

/* One copy of len bytes of the child's src into the pool at off, one way. */
static void copy_one(int way, pid_t child, void *src, size_t len, int fd, char *map, size_t off, char *bounce) {
  struct iovec remote = {src, len}, local = {map + off, len}, via = {bounce, len};
  if (way == 1) madvise(map + off, len, MADV_POPULATE_WRITE);
  if (way < 2) {
    if (process_vm_readv(child, &local, 1, &remote, 1, 0) != (ssize_t)len) die("process_vm_readv: %m");
    return;
  }
  if (process_vm_readv(child, &via, 1, &remote, 1, 0) != (ssize_t)len) die("process_vm_readv: %m");
  if (pwrite(fd, bounce, len, (off_t)off) != (ssize_t)len) die("pwrite: %m");
}

/* us per copy: COPIES copies into a new pool, then (warm) COPIES more into the same pages. */
static void run(int way, pid_t child, void *src, size_t len, char *bounce, double *fresh, double *warm) {
  size_t total = len * COPIES;
  int fd = memfd_create("pool-write", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, (off_t)total) < 0) die("memfd: %m");
  char *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) die("mmap: %m");
  double t0 = now_us();
  for (int i = 0; i < COPIES; i++) copy_one(way, child, src, len, fd, map, (size_t)i * len, bounce);
  double t1 = now_us();
  for (int i = 0; i < COPIES; i++) copy_one(way, child, src, len, fd, map, (size_t)i * len, bounce);
  double t2 = now_us();
  *fresh = (t1 - t0) / COPIES;
  *warm = (t2 - t1) / COPIES;
  munmap(map, total);
  close(fd);
}

int main(int argc, char **argv) {
  static const int default_kib[] = {4, 16, 128, 1024};
  int n = argc > 1 ? argc - 1 : 4;
  printf("| KiB | pages | way | fresh pages us | reused pages us |\n|---|---|---|---|---|\n");
  for (int k = 0; k < n; k++) {
    size_t len = (size_t)(argc > 1 ? atoi(argv[k + 1]) : default_kib[k]) * 1024;
    if (len == 0) continue;
    char *src = malloc(len), *bounce = malloc(len);
    memset(src, 7, len);
    memset(bounce, 0, len);
    pid_t child = fork();
    if (child == 0) {
      pause();
      _exit(0);
    }
    for (int way = 0; way < WAYS; way++) {
      double fresh[RUNS], warm[RUNS];
      for (int r = 0; r < RUNS; r++) run(way, child, src, len, bounce, &fresh[r], &warm[r]);
      qsort(fresh, RUNS, sizeof fresh[0], cmp_double);
      qsort(warm, RUNS, sizeof warm[0], cmp_double);
      printf("| %zu | %zu | %s | %.1f | %.1f |\n", len / 1024, len / 4096, way_name[way], fresh[RUNS / 2], warm[RUNS / 2]);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    free(src);
    free(bounce);
  }
  return 0;
}
