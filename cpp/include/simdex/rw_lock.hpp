// The index's reader-writer lock: writer-preferring, and reset in a forked child.
#pragma once
#include <mutex>
#include <shared_mutex>

namespace simdex {

// A reader-writer lock that lets a waiting writer in. glibc's std::shared_mutex prefers readers, so a steady stream
// of overlapping searches could keep add() waiting forever; here a writer queues on gate_, and readers that arrive
// after it wait behind it. Not recursive: a thread holding it must not take it again.
//
// fork(): the child has only the forking thread, so locks held by the parent's other threads would never be
// released there. Every RwLock is registered, and right after fork the child resets them all. A lock a writer
// held at that moment guards data that may be half-changed; it is marked torn, and taking it throws
// std::runtime_error instead of handing out that data.
class RwLock {
  public:
    RwLock();
    ~RwLock();
    RwLock(const RwLock&) = delete;
    RwLock& operator=(const RwLock&) = delete;
    void lock();
    void unlock() { mu_.unlock(); }
    void lock_shared();
    void unlock_shared() { mu_.unlock_shared(); }
    void reset_after_fork() noexcept;  // in the child only, while it has a single thread

  private:
    void check_torn();
    std::mutex gate_;
    std::shared_mutex mu_;
    bool torn_ = false;
};

}  // namespace simdex
