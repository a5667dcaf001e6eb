// See procfile.h.
#include "procfile.h"

#include <fcntl.h>
#include <unistd.h>

namespace procfile {

std::string Read(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(r));
  close(fd);
  return out;
}

std::string StatusField(const std::string& status, const char* key) {
  std::string k = std::string("\n") + key + ":";
  size_t at = status.find(k);
  if (at == std::string::npos) return {};
  at += k.size();
  size_t end = status.find('\n', at);
  std::string v = status.substr(at, end == std::string::npos ? std::string::npos : end - at);
  size_t b = v.find_first_not_of(" \t");
  return b == std::string::npos ? std::string() : v.substr(b);
}

}  // namespace procfile
