#include "pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fuse_kernel.h"
#include "loopcall.h"
#include "memtask.h"

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kStoreChunk = 1 << 20;
// Where a write goes (bench/pool-write.c, on this paravirtualized VM): the
// first touch of a page through the server's mapping costs an exit to the
// host (1 MiB of fresh pages: 3.6 ms; 2.0 ms populated first), pwrite does
// not (0.26 ms); once touched, the mapping is the cheaper way (84 us against
// 210 us a MiB). Writes shorter than a page go through the mapping: they
// land on few pages, mostly reused. Longer ones go with pwrite until their
// blocks have been written kMapAfter times, then through the mapping.
constexpr size_t kPwriteMin = 4096;
constexpr uint64_t kBlock = 64 * 1024;
constexpr uint8_t kMapAfter = 8;
}  // namespace

Pool* Pool::Create(int devfd, bool passthrough, int* err) {
  int memfd = memfd_create("kdbusfs-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd < 0) {
    *err = -errno;
    return nullptr;
  }
  Pool* p = new Pool(devfd, memfd, passthrough);
  if (passthrough) {
    kfuse::BackingMap map{};
    map.fd = memfd;
    int id = ioctl(devfd, kfuse::kIocBackingOpen, &map);
    if (id < 0) {
      *err = -errno;
      delete p;
      return nullptr;
    }
    p->backingId_ = id;
  }
  return p;
}

Pool::~Pool() {
  if (map_) munmap(map_, size_);
  CloseBacking();
  close(memfd_);
}

void Pool::CloseBacking() {
  if (backingId_ < 0) return;
  uint32_t id = static_cast<uint32_t>(backingId_);
  ioctl(devfd_, kfuse::kIocBackingClose, &id);
  backingId_ = -1;
}

int Pool::Setup(uint64_t size) {
  if (map_) return -EBUSY;
  if (size == 0 || size > (1ULL << 40)) return -EINVAL;
  if (ftruncate(memfd_, static_cast<off_t>(size)) < 0) return -errno;
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
  if (m == MAP_FAILED) return -errno;
  map_ = static_cast<uint8_t*>(m);
  size_ = size;
  // The pool cannot change size under us (a passthrough client's write(2)
  // past its end, kdbus had no write operation). Not F_SEAL_FUTURE_WRITE:
  // it would refuse the server's own pwrite too; a client can write its own
  // pool anyway, through a writable mapping (README "Status").
  if (fcntl(memfd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) return -errno;
  // The client's OPEN has long been answered: the kernel holds its own
  // reference to the backing file now.
  CloseBacking();
  return 0;
}

bool Pool::ThroughMapping(uint64_t off, size_t len) {
  if (len < kPwriteMin) return true;
  bool mapped = true;
  for (uint64_t b = off / kBlock, last = (off + len - 1) / kBlock; b <= last; b++) {
    uint8_t& n = blockWrites_[b];
    if (n < kMapAfter) {
      mapped = false;
      n++;
    }
  }
  return mapped;
}

int Pool::Write(uint64_t off, const void* data, size_t len) {
  if (ThroughMapping(off, len)) {
    memcpy(map_ + off, data, len);
    return 0;
  }
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t done = 0; done < len;) {
    ssize_t w = pwrite(memfd_, p + done, len - done, static_cast<off_t>(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? -errno : -EIO;
    done += static_cast<size_t>(w);
  }
  return 0;
}

int Pool::CopyFromProcess(uint64_t off, pid_t tid, uint64_t addr, size_t len) {
  return memtask::ReadIntoPool(tid, addr, memfd_, ThroughMapping(off, len) ? map_ : nullptr, off, len);
}

void Pool::Flush(uint64_t nodeid, uint64_t off, uint64_t len) {
  if (passthrough_ || !map_ || len == 0) return;
  // Whole pages only: a fully stored page is uptodate, so the client never
  // faults it (a fault holds the page lock while its READ waits for us, and
  // a STORE into that page would then block this thread for good).
  uint64_t start = off & ~(kPage - 1);
  uint64_t end = std::min(size_, (off + len + kPage - 1) & ~(kPage - 1));
  while (start < end) {
    uint64_t n = std::min(kStoreChunk, end - start);
    fuse_notify_store_out st{};
    st.nodeid = nodeid;
    st.offset = start;
    st.size = static_cast<uint32_t>(n);
    fuse_out_header oh{};
    oh.len = static_cast<uint32_t>(sizeof oh + sizeof st + n);
    oh.error = FUSE_NOTIFY_STORE;
    iovec iov[3] = {{&oh, sizeof oh}, {&st, sizeof st}, {map_ + start, n}};
    // A page a client is faulting in stays locked until its READ is answered:
    // the store waits for it, and a StallRescue answers it meanwhile.
    loopcall::Scope stall;
    if (writev(devfd_, iov, 3) < 0) {
      // ENOENT: the kernel already dropped the inode; nobody can see the pool.
      if (errno != ENOENT && errno != ENODEV)
        fprintf(stderr, "kdbusfs: pool store failed: %s\n", strerror(errno));
      return;
    }
    start += n;
  }
}

ssize_t Pool::Read(uint64_t off, void* buf, size_t len) const {
  ssize_t r = pread(memfd_, buf, len, static_cast<off_t>(off));
  return r < 0 ? -errno : r;
}
