// Mounting /dev/fuse, the watchdog that detaches the mount if the server dies,
// and cleaning up a dead mount left behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

struct MountParams {
  std::string mountpoint;
  std::string fsname;
  std::string subtype;
  uint32_t rootMode = 0755;
  uint32_t rootUid = 0;
  uint32_t rootGid = 0;
  bool allowOther = false;
  bool defaultPermissions = false;
};

// Opens /dev/fuse and mounts it. Returns the fd, or -errno with *err describing why.
int MountFuse(const MountParams& p, std::string* err);

class Watchdog {
 public:
  // Forks a process that detaches mountpoint once this process is gone. 0 or
  // -errno (*err says why).
  int Start(const std::string& mountpoint, std::string* err);
  // Tells it the mount was taken down properly and reaps it.
  void Stop();

 private:
  int pipe_ = -1;
  pid_t pid_ = -1;
};

bool ClearStaleMount(const std::string& dir);
