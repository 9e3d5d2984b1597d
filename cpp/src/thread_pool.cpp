#include "simdex/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#include <pthread.h>
#include <unistd.h>

namespace simdex {
namespace {

std::size_t available_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<std::size_t>(CPU_COUNT(&set));
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n ? n : 1;
}

class Pool {
  public:
    explicit Pool(std::size_t n) : size_(n) {}
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }
    std::size_t size() const { return size_; }

    // Returns false (and does nothing) when another job holds the pool.
    bool try_run(std::size_t n_tasks, const TaskFn& fn, const InterruptFn& interrupt) {
        std::unique_lock<std::mutex> job(job_mu_, std::try_to_lock);
        if (!job.owns_lock()) return false;
        start_threads();
        std::unique_lock<std::mutex> lock(mu_);
        fn_ = &fn;
        n_tasks_ = n_tasks;
        next_.store(0);
        cancel_.store(false);
        error_ = nullptr;
        running_ = threads_.size();
        ++generation_;
        wake_.notify_all();
        bool interrupted = false;
        while (running_ > 0) {
            done_.wait_for(lock, std::chrono::milliseconds(10));
            if (running_ > 0 && interrupt && !interrupted) {
                lock.unlock();
                interrupted = interrupt();
                if (interrupted) cancel_.store(true);
                lock.lock();
            }
        }
        fn_ = nullptr;
        if (error_) std::rethrow_exception(error_);
        if (interrupted) throw Interrupted();
        return true;
    }

  private:
    void start_threads() {
        if (!threads_.empty()) return;
        for (std::size_t w = 0; w < size_; ++w) threads_.emplace_back([this, w] { loop(w); });
    }
    void loop(std::size_t worker) {
        std::uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mu_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            const TaskFn* fn = fn_;
            const std::size_t n = n_tasks_;
            lock.unlock();
            try {
                for (std::size_t t; !cancel_.load(std::memory_order_relaxed) && (t = next_.fetch_add(1)) < n;)
                    (*fn)(t, worker);
            } catch (...) {
                std::lock_guard<std::mutex> g(mu_);
                if (!error_) error_ = std::current_exception();
                cancel_.store(true);
            }
            lock.lock();
            if (--running_ == 0) done_.notify_all();
        }
    }

    const std::size_t size_;
    std::vector<std::thread> threads_;
    std::mutex job_mu_, mu_;
    std::condition_variable wake_, done_;
    const TaskFn* fn_ = nullptr;
    std::size_t n_tasks_ = 0, running_ = 0;
    std::uint64_t generation_ = 0;
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> cancel_{false};
    std::exception_ptr error_;
    bool stop_ = false;
};

std::mutex g_mu;
std::size_t g_threads = 0;  // 0: all available cores
std::shared_ptr<Pool> g_pool;
pid_t g_pool_pid = 0;

std::size_t resolved_threads() { return g_threads ? g_threads : available_cores(); }

// g_mu is held across fork() (it is only ever held briefly), so a child never inherits it locked by a thread
// that does not exist there.
void register_fork_handlers() {
    static std::once_flag once;
    std::call_once(once, [] {
        pthread_atfork([] { g_mu.lock(); }, [] { g_mu.unlock(); }, [] { new (&g_mu) std::mutex; });
    });
}

// The pool of this process. After fork() the child gets a new one: the parent's threads do not exist there,
// so the old object is deliberately leaked rather than joined.
std::shared_ptr<Pool> pool() {
    register_fork_handlers();
    std::lock_guard<std::mutex> lock(g_mu);
    const pid_t pid = getpid();
    if (g_pool && g_pool_pid != pid) {
        new std::shared_ptr<Pool>(std::move(g_pool));  // leak on purpose
        g_pool.reset();
    }
    if (!g_pool || g_pool->size() != resolved_threads()) {
        g_pool = std::make_shared<Pool>(resolved_threads());
        g_pool_pid = pid;
    }
    return g_pool;
}

void run_inline(std::size_t n_tasks, const TaskFn& fn, const InterruptFn& interrupt) {
    auto last = std::chrono::steady_clock::now();
    for (std::size_t t = 0; t < n_tasks; ++t) {
        if (interrupt) {
            const auto now = std::chrono::steady_clock::now();
            if (now - last > std::chrono::milliseconds(10)) {
                last = now;
                if (interrupt()) throw Interrupted();
            }
        }
        fn(t, 0);
    }
}

}  // namespace

std::size_t num_threads() {
    std::lock_guard<std::mutex> lock(g_mu);
    return resolved_threads();
}

void set_num_threads(std::size_t n) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_threads = n;
}

void parallel_for(std::size_t n_tasks, std::size_t workers, const TaskFn& fn, const InterruptFn& interrupt) {
    if (n_tasks == 0) return;
    if (n_tasks == 1 || workers <= 1) return run_inline(n_tasks, fn, interrupt);
    std::shared_ptr<Pool> p = pool();
    if (p->size() > workers || !p->try_run(n_tasks, fn, interrupt)) run_inline(n_tasks, fn, interrupt);
}

void parallel_for_blocks(std::size_t n, std::size_t block, std::size_t workers, const BlockFn& fn,
                         const InterruptFn& interrupt) {
    parallel_for(
        (n + block - 1) / block, workers,
        [&](std::size_t t, std::size_t w) { fn(t * block, std::min(n, (t + 1) * block), w); }, interrupt);
}

}  // namespace simdex
