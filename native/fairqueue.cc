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
    auto holds = [&](User& u) {
      for (const auto& r : u.reqs) {
        if (HeaderOf(r).unique != target) continue;
        u.reqs.push_back(std::move(req));
        return true;
      }
      return false;
    };
    if (served_ && holds(*served_)) return;
    for (User& u : turns_)
      if (holds(u)) return;
    first_.push_back(std::move(req));
    return;
  }
  if (served_ && served_->uid == h.uid) {
    served_->reqs.push_back(std::move(req));
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
  } else {
    // The user served last goes to the back of the line only now, behind
    // those whose first request came while its own was being served.
    if (served_) {
      turns_.push_back(std::move(*served_));
      served_.reset();
    }
    if (turns_.empty()) return false;
    User u = std::move(turns_.front());
    turns_.pop_front();
    *req = std::move(u.reqs.front());
    u.reqs.pop_front();
    if (!u.reqs.empty()) served_ = std::move(u);
  }
  count_--;
  bytes_ -= req->size();
  return true;
}

void FairQueue::Clear() {
  first_.clear();
  turns_.clear();
  served_.reset();
  count_ = 0;
  bytes_ = 0;
}
