// A connection's pool: a memfd the server maps and writes, which the client
// maps read-only through its FUSE file (passthrough, or the page cache).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <unordered_map>

class Pool {
 public:
  // Creates the (empty) memfd; with passthrough also registers it as a backing
  // file of devfd. Returns nullptr and sets *err (-errno) on failure.
  static Pool* Create(int devfd, bool passthrough, int* err);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int backingId() const { return backingId_; }
  bool passthrough() const { return passthrough_; }
  bool ready() const { return map_ != nullptr; }
  uint64_t size() const { return size_; }
  bool InBounds(uint64_t off, uint64_t len) const {
    return map_ && off <= size_ && len <= size_ - off;
  }

  int Setup(uint64_t size);
  // 0, or -errno (-ENOSPC, -ENOMEM: no memory for the pool's pages).
  int Write(uint64_t off, const void* data, size_t len);
  int CopyFromProcess(uint64_t off, pid_t tid, uint64_t addr, size_t len);
  // Page-cache mode: pushes whole pages around [off, off+len) into the inode
  // nodeid with FUSE_NOTIFY_STORE. No-op with passthrough.
  void Flush(uint64_t nodeid, uint64_t off, uint64_t len);
  // Serves a READ (page-cache faults). Returns bytes read or -errno.
  ssize_t Read(uint64_t off, void* buf, size_t len) const;

 private:
  Pool(int devfd, int memfd, bool passthrough) : devfd_(devfd), memfd_(memfd), passthrough_(passthrough) {}
  void CloseBacking();
  // True if a write of [off, off+len) is cheaper through map_ than with
  // pwrite (see pool.cc), counting it for the blocks it touches.
  bool ThroughMapping(uint64_t off, size_t len);

  int devfd_;
  int memfd_;
  bool passthrough_;
  int backingId_ = -1;
  uint8_t* map_ = nullptr;
  // Writes of a page or more per 64 KiB block, up to kMapAfter: only blocks
  // such writes touched (a pool may be far larger than what it ever holds).
  std::unordered_map<uint64_t, uint8_t> blockWrites_;
  uint64_t size_ = 0;
};
