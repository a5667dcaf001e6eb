#include "procmem.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "loopcall.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace procmem {

int Read(pid_t tid, uint64_t addr, void* dst, size_t len) {
  if (len == 0) return 0;
  iovec local{dst, len};
  iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), len};
  // The range may be a page of a page-cache pool: faulting it in asks this
  // process for a FUSE READ (see StallRescue).
  loopcall::Scope stall;
  ssize_t r = process_vm_readv(tid, &local, 1, &remote, 1, 0);
  if (r < 0) return -errno;
  return static_cast<size_t>(r) == len ? 0 : -EFAULT;
}

int Write(pid_t tid, uint64_t addr, const void* src, size_t len) {
  if (len == 0) return 0;
  iovec local{const_cast<void*>(src), len};
  iovec remote{reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), len};
  loopcall::Scope stall;  // as in Read: a writable mapping of a pool faults in through FUSE
  ssize_t r = process_vm_writev(tid, &local, 1, &remote, 1, 0);
  if (r < 0) return -errno;
  return static_cast<size_t>(r) == len ? 0 : -EFAULT;
}

namespace {

pid_t TgidOf(pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(tid));
  FILE* f = fopen(path, "re");
  if (!f) return -1;
  char line[256];
  pid_t tgid = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "Tgid:", 5) == 0) {
      tgid = static_cast<pid_t>(strtol(line + 5, nullptr, 10));
      break;
    }
  }
  fclose(f);
  return tgid;
}

int PidfdOpen(pid_t tid) {
  int pfd = static_cast<int>(syscall(SYS_pidfd_open, tid, PIDFD_THREAD));
  if (pfd >= 0 || errno != EINVAL) return pfd;
  // Kernels before 6.9 only take a thread-group leader.
  pid_t tgid = TgidOf(tid);
  if (tgid <= 0) {
    errno = ESRCH;
    return -1;
  }
  return static_cast<int>(syscall(SYS_pidfd_open, tgid, 0));
}

}  // namespace

int TakeFd(pid_t tid, int fd) {
  if (tid <= 0) return -ESRCH;
  if (fd < 0) return -EBADF;
  int pfd = PidfdOpen(tid);
  if (pfd < 0) return -errno;
  int got = static_cast<int>(syscall(SYS_pidfd_getfd, pfd, fd, 0));
  int err = errno;
  close(pfd);
  return got < 0 ? -err : got;
}

int StatFd(int fd, FdInfo* info) {
  // fstat would ask a FUSE server for fresh attributes: on a kdbusfs file of
  // our own mount, that server is the thread making the call.
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &stx) < 0) return -errno;
  // A sealable file (a memfd) is no O_PATH fd: F_GET_SEALS fails on those
  // (EBADF), so F_GETFL is asked only when it fails.
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals >= 0) {
    info->pathOnly = false;
  } else {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    info->pathOnly = (flags & O_PATH) != 0;
  }
  info->seals = seals < 0 ? -1 : seals;
  info->size = stx.stx_size;
  info->mode = stx.stx_mode;
  info->dev = DevNumber(stx.stx_dev_major, stx.stx_dev_minor);
  info->ino = stx.stx_ino;
  info->domain = -1;
  if (S_ISSOCK(stx.stx_mode) && !info->pathOnly) {
    int domain = -1;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) info->domain = domain;
  }
  return 0;
}

}  // namespace procmem
