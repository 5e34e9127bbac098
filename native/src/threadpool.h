// A persistent pool of worker threads with one primitive, parallel_for: the calling thread
// takes part, workers spin briefly then sleep, so back-to-back kernels pay no thread start-up.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pastiche {

class ThreadPool {
 public:
  static ThreadPool& instance();
  // Total threads including the caller; at least 1.
  void set_threads(int n);
  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(i, thread_index) for i in [0, n), spread over the threads; returns when all are done.
  void parallel_for(int n, const std::function<void(int, int)>& fn);
  ~ThreadPool();

 private:
  ThreadPool();
  void stop_workers();
  void worker_loop(int index, unsigned seen);
  void run_tasks(int thread_index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_size_ = 0;
  std::atomic<int> next_{0};
  std::atomic<int> pending_{0};  // workers still in the current job
  std::atomic<unsigned> generation_{0};
  bool stopping_ = false;
};

// Element-wise passes are memory-bound: f(i0, i1) over [0, size) in chunks of 256 Ki elements (a
// multiple of every vector width), large passes split over the threads.
template <class F>
void for_chunks(long size, F f) {
  const long chunk = 1 << 18;
  const int n = (int)((size + chunk - 1) / chunk);
  ThreadPool::instance().parallel_for(n, [&](int c, int) { f((long)c * chunk, (long)(c + 1) * chunk < size ? (long)(c + 1) * chunk : size); });
}

}  // namespace pastiche
