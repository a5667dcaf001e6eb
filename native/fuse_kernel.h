// The FUSE kernel protocol as this kernel speaks it (7.45). Debian's
// <linux/fuse.h> stops at 7.38, so the few later additions we rely on
// (passthrough, the 64-byte fuse_init_out layout) are spelled out here.
#pragma once

#include <linux/fuse.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace kfuse {

// We reply this minor (or the kernel's, if older): 7.40 added passthrough.
constexpr uint32_t kReplyMinor = 41;

constexpr uint64_t kInitPassthrough = 1ULL << 37;  // FUSE_PASSTHROUGH, a flags2 bit
constexpr uint32_t kOpenPassthrough = 1u << 7;     // FOPEN_PASSTHROUGH

struct InitOut {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint16_t request_timeout;
  uint16_t unused[11];
};
static_assert(sizeof(InitOut) == 64, "fuse_init_out is 64 bytes");

struct OpenOut {
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
static_assert(sizeof(OpenOut) == 16, "fuse_open_out is 16 bytes");

struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kIocBackingClose = _IOW(229, 2, uint32_t);

}  // namespace kfuse
