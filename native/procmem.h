// Access to a caller's memory and file descriptors, by thread id.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace procmem {

// process_vm_readv / process_vm_writev in the calling thread. 0, or -errno
// (-EFAULT when short). The call lasts as long as the fault does, which a
// client controls: the loop thread copies clients' memory through memtask
// instead; the fd installer's tracer uses this (on a thread it stopped,
// off the loop thread). On the loop thread each
// is a loopcall::Scope: it may wait for a FUSE READ of this very process.
int Read(pid_t tid, uint64_t addr, void* dst, size_t len);
int Write(pid_t tid, uint64_t addr, const void* src, size_t len);

// A copy (O_CLOEXEC) of the thread's fd in this process, or -errno.
int TakeFd(pid_t tid, int fd);

struct FdInfo {
  int seals;  // F_GET_SEALS, -1 if the fd is not sealable (not a memfd)
  uint64_t size;
  uint32_t mode;
  uint64_t dev;     // the file system's device, (major << 20) | minor
  uint64_t ino;
  bool pathOnly;    // opened with O_PATH
  int domain;       // a socket's SO_DOMAIN (AF_UNIX...), -1 for other files
};
// Never sends a request to a FUSE server (statx with AT_STATX_DONT_SYNC and an
// empty mask): the fd may be a file of a mount this very thread serves.
int StatFd(int fd, FdInfo* info);

// (major << 20) | minor, the kernel's own dev_t layout.
inline uint64_t DevNumber(uint32_t major, uint32_t minor) {
  return (static_cast<uint64_t>(major) << 20) | minor;
}

}  // namespace procmem
