// A small persistent pool of std::threads for the heavy calls (no OpenMP). One job runs on the pool at a time;
// a caller that finds the pool busy runs its job inline, so concurrent searches still make progress side by side.
#pragma once
#include <cstddef>
#include <exception>
#include <functional>

namespace simdex {

struct Interrupted : std::exception {
    const char* what() const noexcept override { return "interrupted"; }
};

// fn(task, worker): task in [0, n_tasks), worker in [0, workers) and owned by one thread at a time.
using TaskFn = std::function<void(std::size_t task, std::size_t worker)>;
// Polled by the calling thread every few milliseconds; returning true cancels the remaining tasks.
using InterruptFn = std::function<bool()>;

std::size_t num_threads();
void set_num_threads(std::size_t n);  // 0 means "all cores this process may use"

// Runs the tasks on at most `workers` threads (worker indices < workers; pass num_threads() read once, and
// size per-worker state by it) and returns when all are done. Rethrows the first exception a task threw;
// throws Interrupted if interrupt() returned true before the tasks finished.
void parallel_for(std::size_t n_tasks, std::size_t workers, const TaskFn& fn, const InterruptFn& interrupt = {});

// fn(begin, end, worker) over the items [0, n) in blocks of `block` (the last may be shorter): parallel_for with
// one task per block.
using BlockFn = std::function<void(std::size_t begin, std::size_t end, std::size_t worker)>;
void parallel_for_blocks(std::size_t n, std::size_t block, std::size_t workers, const BlockFn& fn,
                         const InterruptFn& interrupt = {});

}  // namespace simdex
