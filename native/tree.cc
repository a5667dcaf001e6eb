// Directories keep one stable node id. A file node is only a template: every
// LOOKUP of it returns a fresh "instance" node id, so every connection gets its
// own kernel inode (and with it its own pool page cache or passthrough file).
// All entry/attr timeouts are 0, so the kernel revalidates on every path walk.
#include "tree.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>

namespace {

timespec Now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

Tree::Tree(uint32_t rootMode, uint32_t rootUid, uint32_t rootGid) {
  Node& root = nodes_[kRoot];
  root.parent = kRoot;
  root.isDir = true;
  root.mode = rootMode & 07777;
  root.uid = rootUid;
  root.gid = rootGid;
  root.ctime = Now();
}

int64_t Tree::Add(uint64_t parent, const std::string& name, bool isDir, uint32_t mode,
                  uint32_t uid, uint32_t gid, double tag) {
  auto p = nodes_.find(parent);
  if (p == nodes_.end() || p->second.removed) return -ENOENT;
  if (!p->second.isDir) return -ENOTDIR;
  if (!ValidName(name)) return -EINVAL;
  if (p->second.children.count(name)) return -EEXIST;
  uint64_t ino = next_++;
  Node n;
  n.parent = parent;
  n.name = name;
  n.isDir = isDir;
  n.mode = mode & 07777;
  n.uid = uid;
  n.gid = gid;
  n.tag = tag;
  n.ctime = Now();
  // p may be invalidated by the insertion below: finish with it first.
  p->second.children.emplace(name, ino);
  if (isDir) p->second.subdirs++;
  p->second.ctime = n.ctime;
  nodes_.emplace(ino, std::move(n));
  return static_cast<int64_t>(ino);
}

int Tree::Remove(uint64_t ino) {
  if (ino == kRoot) return -EPERM;
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || it->second.removed) return -ENOENT;
  auto p = nodes_.find(it->second.parent);
  if (p != nodes_.end()) {
    p->second.children.erase(it->second.name);
    if (it->second.isDir) p->second.subdirs--;
    p->second.ctime = Now();
  }
  RemoveRec(ino);
  return 0;
}

void Tree::RemoveRec(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& n = it->second;
  std::vector<uint64_t> kids;
  for (auto& c : n.children) kids.push_back(c.second);
  n.children.clear();
  n.subdirs = 0;
  n.removed = true;
  for (uint64_t k : kids) RemoveRec(k);
  MaybeFree(ino);
}

void Tree::MaybeFree(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it != nodes_.end() && it->second.removed && it->second.nlookup == 0 &&
      it->second.instances == 0)
    nodes_.erase(it);
}

void Tree::FillAttr(uint64_t ino, const Node& n, uint64_t size, fuse_attr* a) const {
  *a = fuse_attr{};
  a->ino = ino;
  a->size = size;
  a->blocks = (size + 511) / 512;
  a->atime = a->mtime = a->ctime = static_cast<uint64_t>(n.ctime.tv_sec);
  a->atimensec = a->mtimensec = a->ctimensec = static_cast<uint32_t>(n.ctime.tv_nsec);
  a->mode = (n.isDir ? S_IFDIR : S_IFREG) | n.mode;
  if (n.removed)
    a->nlink = 0;
  else
    a->nlink = n.isDir ? 2 + n.subdirs : 1;
  a->uid = n.uid;
  a->gid = n.gid;
  a->blksize = 4096;
}

int Tree::Lookup(uint64_t parent, const std::string& name, uint64_t* nodeid, fuse_attr* attr) {
  auto p = nodes_.find(parent);
  if (p == nodes_.end()) return -ENOENT;
  if (!p->second.isDir) return -ENOTDIR;
  auto c = p->second.children.find(name);
  if (c == p->second.children.end()) return -ENOENT;
  uint64_t ino = c->second;
  Node& n = nodes_.at(ino);
  if (n.isDir) {
    n.nlookup++;
    *nodeid = ino;
    FillAttr(ino, n, 0, attr);
    return 0;
  }
  uint64_t id = next_++;
  Instance& inst = instances_[id];
  inst.tmpl = ino;
  inst.nlookup = 1;
  n.instances++;
  *nodeid = id;
  FillAttr(id, n, 0, attr);
  return 0;
}

int Tree::GetAttr(uint64_t nodeid, fuse_attr* attr) const {
  auto n = nodes_.find(nodeid);
  if (n != nodes_.end()) {
    FillAttr(nodeid, n->second, 0, attr);
    return 0;
  }
  auto i = instances_.find(nodeid);
  if (i == instances_.end()) return -ENOENT;
  FillAttr(nodeid, nodes_.at(i->second.tmpl), i->second.size, attr);
  return 0;
}

void Tree::Forget(uint64_t nodeid, uint64_t count) {
  if (nodeid == kRoot) return;
  auto i = instances_.find(nodeid);
  if (i != instances_.end()) {
    Instance& inst = i->second;
    inst.nlookup = count >= inst.nlookup ? 0 : inst.nlookup - count;
    if (inst.nlookup) return;
    uint64_t tmpl = inst.tmpl;
    instances_.erase(i);
    auto t = nodes_.find(tmpl);
    if (t != nodes_.end()) {
      t->second.instances--;
      MaybeFree(tmpl);
    }
    return;
  }
  auto n = nodes_.find(nodeid);
  if (n == nodes_.end()) return;
  n->second.nlookup = count >= n->second.nlookup ? 0 : n->second.nlookup - count;
  MaybeFree(nodeid);
}

int Tree::ListDir(uint64_t nodeid, std::vector<DirEntry>* out) const {
  auto it = nodes_.find(nodeid);
  if (it == nodes_.end()) return instances_.count(nodeid) ? -ENOTDIR : -ENOENT;
  const Node& n = it->second;
  if (!n.isDir) return -ENOTDIR;
  out->clear();
  out->push_back({nodeid, DT_DIR, "."});
  out->push_back({n.parent, DT_DIR, ".."});
  for (auto& c : n.children) {
    const Node& k = nodes_.at(c.second);
    out->push_back({c.second, static_cast<uint32_t>(k.isDir ? DT_DIR : DT_REG), c.first});
  }
  return 0;
}

int Tree::CheckOpen(uint64_t nodeid, double* tag, bool* reopened) const {
  auto i = instances_.find(nodeid);
  if (i == instances_.end()) return nodes_.count(nodeid) ? -EISDIR : -ENOENT;
  const Node& t = nodes_.at(i->second.tmpl);
  // kdbus answers ESHUTDOWN for a node that was deactivated.
  if (t.removed) return -ESHUTDOWN;
  // A second open would share this inode's pool with another connection.
  if (i->second.openFh) return -EBUSY;
  *tag = t.tag;
  *reopened = i->second.opened;
  return 0;
}

void Tree::MarkOpen(uint64_t nodeid, uint64_t fh) {
  auto i = instances_.find(nodeid);
  if (i == instances_.end()) return;
  i->second.openFh = fh;
  i->second.opened = true;
}

void Tree::MarkClosed(uint64_t nodeid) {
  auto i = instances_.find(nodeid);
  if (i == instances_.end()) return;
  i->second.openFh = 0;
  i->second.size = 0;
}

void Tree::SetInstanceSize(uint64_t nodeid, uint64_t size) {
  auto i = instances_.find(nodeid);
  if (i != instances_.end()) i->second.size = size;
}
