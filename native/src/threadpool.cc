#include "threadpool.h"

#include <algorithm>

namespace pastiche {

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  unsigned hc = std::thread::hardware_concurrency();
  set_threads(hc == 0 ? 1 : static_cast<int>(hc));
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  stopping_ = false;
}

void ThreadPool::set_threads(int n) {
  // More threads than a few per core only cost memory and start-up time, and with C++ exceptions
  // off (node-gyp's default) a refused thread aborts the process: the JavaScript side bounds the
  // request to the cores, this is the last guard for direct callers.
  const unsigned hc = std::thread::hardware_concurrency();
  const int most = static_cast<int>(std::min(1024u, 4 * (hc == 0 ? 1 : hc)));
  n = std::max(1, std::min(n, most));
  if (n == threads()) return;
  stop_workers();
  // The generation is read here, not in the new thread: a job posted before the thread starts
  // running must still count as new to it.
  const unsigned seen = generation_.load();
  for (int i = 1; i < n; i++) workers_.emplace_back([this, i, seen] { worker_loop(i, seen); });
}

void ThreadPool::run_tasks(int thread_index) {
  for (;;) {
    int i = next_.fetch_add(1);
    if (i >= job_size_) break;
    (*job_)(i, thread_index);
  }
}

void ThreadPool::worker_loop(int index, unsigned seen) {
  for (;;) {
    // Spin a little: kernels come in quick succession during a forward pass.
    for (int spin = 0; spin < 4000 && generation_.load(std::memory_order_acquire) == seen; spin++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      if (stopping_) return;
    }
    seen = generation_.load();
    run_tasks(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int n, const std::function<void(int, int)>& fn) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty()) {
    for (int i = 0; i < n; i++) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    next_.store(0);
    pending_.store(static_cast<int>(workers_.size()));
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks(0);
  while (pending_.load(std::memory_order_acquire) != 0) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

}  // namespace pastiche
