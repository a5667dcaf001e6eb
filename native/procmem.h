// Access to a caller's memory and file descriptors, by thread id.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace procmem {

// process_vm_readv / process_vm_writev. 0, or -errno (-EFAULT when short).
int Read(pid_t tid, uint64_t addr, void* dst, size_t len);
int Write(pid_t tid, uint64_t addr, const void* src, size_t len);

// A copy (O_CLOEXEC) of the thread's fd in this process, or -errno.
int TakeFd(pid_t tid, int fd);

struct FdInfo {
  int seals;  // F_GET_SEALS, -1 if the fd is not sealable (not a memfd)
  uint64_t size;
  uint32_t mode;
};
int StatFd(int fd, FdInfo* info);

}  // namespace procmem
