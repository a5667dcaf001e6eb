#include "mount.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

std::string ErrnoText(int e) {
  return std::string(strerror(e)) + " (errno " + std::to_string(e) + ")";
}

// Where this process's command line lives (/proc/self/stat fields 48 and 49):
// the watchdog writes its own name there, so that ps tells it from the server.
bool ArgArea(char** start, size_t* len) {
  FILE* f = fopen("/proc/self/stat", "re");
  if (!f) return false;
  char buf[2048];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char* p = strrchr(buf, ')');  // the name before it may hold spaces
  if (!p) return false;
  unsigned long long argStart = 0, argEnd = 0;
  int field = 2;
  for (char* tok = strtok(p + 1, " "); tok; tok = strtok(nullptr, " ")) {
    field++;
    if (field == 48) argStart = strtoull(tok, nullptr, 10);
    if (field == 49) argEnd = strtoull(tok, nullptr, 10);
  }
  if (argStart == 0 || argEnd <= argStart) return false;
  *start = reinterpret_cast<char*>(argStart);
  *len = argEnd - argStart;
  return true;
}

}  // namespace

int MountFuse(const MountParams& p, std::string* err) {
  int fd = open("/dev/fuse", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    *err = "kdbusfs: cannot open /dev/fuse: " + ErrnoText(e);
    return -e;
  }
  char data[256];
  snprintf(data, sizeof data, "fd=%d,rootmode=%o,user_id=%u,group_id=%u%s%s", fd,
           S_IFDIR | (p.rootMode & 07777), p.rootUid, p.rootGid,
           p.allowOther ? ",allow_other" : "", p.defaultPermissions ? ",default_permissions" : "");
  std::string type = p.subtype.empty() ? "fuse" : "fuse." + p.subtype;
  if (mount(p.fsname.c_str(), p.mountpoint.c_str(), type.c_str(), MS_NOSUID | MS_NODEV, data) < 0) {
    int e = errno;
    close(fd);
    *err = "kdbusfs: mounting " + type + " on " + p.mountpoint + " failed: " + ErrnoText(e);
    return -e;
  }
  return fd;
}

int Watchdog::Start(const std::string& mountpoint, std::string* err) {
  int fds[2];
  // CLOEXEC: processes the server spawns must not keep the write end open.
  if (pipe2(fds, O_CLOEXEC) < 0) {
    int e = errno;
    *err = "kdbusfs: watchdog pipe: " + ErrnoText(e);
    return -e;
  }
  const char* mp = mountpoint.c_str();
  // "kdbusfs-watchdog MOUNTPOINT" as argv, as much as fits where argv was.
  std::string title = std::string("kdbusfs-watchdog") + '\0' + mountpoint;
  char* argStart = nullptr;
  size_t argLen = 0;
  bool retitle = ArgArea(&argStart, &argLen);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    *err = "kdbusfs: watchdog fork: " + ErrnoText(e);
    return -e;
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here on: the parent has threads.
    setsid();  // out of the terminal's reach (a ^C must not kill us first)
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    for (int s : {SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGPIPE}) sigaction(s, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Hold nothing but the read end: not /dev/fuse (that would keep a dead
    // server's connection alive), not the write end, not the parent's stdio.
    if (dup2(fds[0], 0) < 0) _exit(1);
    syscall(SYS_close_range, 1U, ~0U, 0U);
    prctl(PR_SET_NAME, "kdbusfs-watch", 0, 0, 0);
    if (retitle) {
      size_t n = title.size() < argLen - 1 ? title.size() : argLen - 1;
      memset(argStart, 0, argLen);  // this process's copy only (fork)
      memcpy(argStart, title.data(), n);
    }
    char c = 0;
    ssize_t r;
    do {
      r = read(0, &c, 1);
    } while (r < 0 && errno == EINTR);
    if (r == 1 && c == 'q') _exit(0);
    umount2(mp, MNT_DETACH);
    _exit(0);
  }
  close(fds[0]);
  pipe_ = fds[1];
  pid_ = pid;
  return 0;
}

void Watchdog::Stop() {
  if (pipe_ >= 0) {
    ssize_t r;
    do {
      r = write(pipe_, "q", 1);
    } while (r < 0 && errno == EINTR);
    close(pipe_);
    pipe_ = -1;
  }
  if (pid_ > 0) {
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
}

bool ClearStaleMount(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) return false;
  // A FUSE mount whose server is gone answers ENOTCONN (or ECONNABORTED while
  // the connection is being torn down).
  if (errno != ENOTCONN && errno != ECONNABORTED) return false;
  return umount2(dir.c_str(), MNT_DETACH) == 0;
}
