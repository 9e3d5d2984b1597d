#include "simdex/rw_lock.hpp"

#include <new>
#include <pthread.h>
#include <stdexcept>
#include <unordered_set>

namespace simdex {
namespace {

// Every live RwLock, for the fork handlers. Heap-allocated and never freed, so it outlives static destructors.
std::mutex& locks_mu() {
    static std::mutex* mu = new std::mutex;
    return *mu;
}
std::unordered_set<RwLock*>& live_locks() {
    static auto* set = new std::unordered_set<RwLock*>;
    return *set;
}

// locks_mu is held across fork() so the set is never copied mid-change; it is only ever held briefly.
void before_fork() { locks_mu().lock(); }
void after_fork_parent() { locks_mu().unlock(); }
void after_fork_child() {
    new (&locks_mu()) std::mutex;  // held by this thread in before_fork; a fresh one is simply unlocked
    for (RwLock* l : live_locks()) l->reset_after_fork();
}

}  // namespace

RwLock::RwLock() {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(before_fork, after_fork_parent, after_fork_child); });
    std::lock_guard<std::mutex> g(locks_mu());
    live_locks().insert(this);
}

RwLock::~RwLock() {
    std::lock_guard<std::mutex> g(locks_mu());
    live_locks().erase(this);
}

void RwLock::check_torn() {
    if (torn_)
        throw std::runtime_error("this index was being changed by another thread when the process forked; "
                                 "it cannot be used in the child process");
}

void RwLock::lock() {
    std::lock_guard<std::mutex> g(gate_);
    mu_.lock();
    if (torn_) {
        mu_.unlock();
        check_torn();
    }
}

void RwLock::lock_shared() {
    std::lock_guard<std::mutex> g(gate_);
    mu_.lock_shared();
    if (torn_) {
        mu_.unlock_shared();
        check_torn();
    }
}

void RwLock::reset_after_fork() noexcept {
    // The copied lock state names threads that do not exist here. Free, or held only by readers: the data is
    // whole. Held by a writer: it may not be.
    bool writer = false;
    if (mu_.try_lock())
        mu_.unlock();
    else if (!mu_.try_lock_shared())
        writer = true;
    new (&gate_) std::mutex;
    new (&mu_) std::shared_mutex;
    torn_ = torn_ || writer;
}

}  // namespace simdex
