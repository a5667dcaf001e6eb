// The file tree the FUSE session answers from: directories with stable inode
// numbers, file templates, and per-LOOKUP file instances (see tree.cc).
#pragma once

#include <linux/fuse.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

struct DirEntry {
  uint64_t ino;
  uint32_t type;  // DT_DIR / DT_REG
  std::string name;
};

class Tree {
 public:
  static constexpr uint64_t kRoot = 1;

  Tree(uint32_t rootMode, uint32_t rootUid, uint32_t rootGid);

  // Changes made by the server. They return 0 or -errno. Names are bytes,
  // compared and listed as given (kdbus names may hold Latin-1 letters).
  int64_t Add(uint64_t parent, const std::string& name, bool isDir, uint32_t mode,
              uint32_t uid, uint32_t gid, double tag);
  int Remove(uint64_t ino);

  // Requests from the kernel.
  int Lookup(uint64_t parent, const std::string& name, uint64_t* nodeid, fuse_attr* attr);
  int GetAttr(uint64_t nodeid, fuse_attr* attr) const;
  void Forget(uint64_t nodeid, uint64_t count);
  int ListDir(uint64_t nodeid, std::vector<DirEntry>* out) const;

  // File instances: the inode a client opens. One open at a time per instance.
  int CheckOpen(uint64_t nodeid, double* tag, bool* reopened) const;
  void MarkOpen(uint64_t nodeid, uint64_t fh);
  void MarkClosed(uint64_t nodeid);
  void SetInstanceSize(uint64_t nodeid, uint64_t size);

 private:
  struct Node {
    uint64_t parent = 0;
    std::string name;
    bool isDir = false;
    uint32_t mode = 0, uid = 0, gid = 0;
    double tag = 0;
    uint64_t nlookup = 0;     // kernel references (directories only)
    uint64_t instances = 0;   // live instances (files only)
    uint32_t subdirs = 0;
    bool removed = false;
    timespec ctime{};
    std::map<std::string, uint64_t> children;
  };
  struct Instance {
    uint64_t tmpl = 0;
    uint64_t nlookup = 0;
    uint64_t openFh = 0;
    uint64_t size = 0;
    bool opened = false;  // has been opened before
  };

  void FillAttr(uint64_t ino, const Node& n, uint64_t size, fuse_attr* attr) const;
  void RemoveRec(uint64_t ino);
  void MaybeFree(uint64_t ino);

  uint64_t next_ = kRoot + 1;  // node ids are never reused
  std::unordered_map<uint64_t, Node> nodes_;
  std::unordered_map<uint64_t, Instance> instances_;
};
