#include "fairqueue.h"

#include <cstring>

#include "fuse_kernel.h"

namespace {

fuse_in_header HeaderOf(const std::vector<uint8_t>& req) {
  fuse_in_header h;
  memcpy(&h, req.data(), sizeof h);
  return h;
}

}  // namespace

void FairQueue::Push(std::vector<uint8_t>&& req) {
  count_++;
  bytes_ += req.size();
  fuse_in_header h = HeaderOf(req);
  if (h.opcode == FUSE_INTERRUPT) {
    uint64_t target = 0;
    if (req.size() >= sizeof h + sizeof target) memcpy(&target, req.data() + sizeof h, sizeof target);
    for (User& u : turns_) {
      for (const auto& r : u.reqs) {
        if (HeaderOf(r).unique != target) continue;
        u.reqs.push_back(std::move(req));
        return;
      }
    }
    first_.push_back(std::move(req));
    return;
  }
  for (User& u : turns_) {
    if (u.uid != h.uid) continue;
    u.reqs.push_back(std::move(req));
    return;
  }
  turns_.push_back(User{h.uid, {}});
  turns_.back().reqs.push_back(std::move(req));
}

bool FairQueue::Pop(std::vector<uint8_t>* req) {
  if (!first_.empty()) {
    *req = std::move(first_.front());
    first_.pop_front();
  } else if (!turns_.empty()) {
    User u = std::move(turns_.front());
    turns_.pop_front();
    *req = std::move(u.reqs.front());
    u.reqs.pop_front();
    // This user's turn is over: to the back of the line, or out of it.
    if (!u.reqs.empty()) turns_.push_back(std::move(u));
  } else {
    return false;
  }
  count_--;
  bytes_ -= req->size();
  return true;
}

void FairQueue::Clear() {
  first_.clear();
  turns_.clear();
  count_ = 0;
  bytes_ = 0;
}
