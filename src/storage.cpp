// Aligned float buffers with a size-keyed cache of freed buffers.
//
// A training step allocates the same activation and gradient buffers every step. Handing
// freed buffers back out avoids fresh pages (and their page faults) on every step. The cache
// holds at most the larger of kCacheFloorBytes and twice the most storage ever alive at once:
// a forward without the tape frees each output after the next layer has read it, so the
// buffers that cycle through a call add up to more than what is alive at any one time (VGG
// at batch 1000: 187 MB cycle, 125 MB alive). Resident memory stays under three times that
// high-water mark. A buffer that does not fit evicts the longest-unused ones; small buffers
// bypass the cache; Storage::release_cached() hands it all back.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>

#include "minidl/tensor.h"

namespace minidl {
namespace {

constexpr size_t kAlignment = 64;
constexpr int64_t kMinCachedFloats = 1024;
constexpr int64_t kCacheFloorBytes = int64_t{128} << 20;

std::atomic<int64_t> g_total_bytes{0};
std::atomic<int64_t> g_live_bytes{0};
std::atomic<int64_t> g_peak_live_bytes{0};

int64_t bytes_of(int64_t floats) { return floats * static_cast<int64_t>(sizeof(float)); }

// Freed buffers by size, and all of them in the order they were freed (oldest first), so that a
// buffer that does not fit evicts the longest unused ones: after a change of workload (training,
// then inference at another batch) the old sizes make room for the new.
struct BufferCache {
  using Entry = std::pair<int64_t, float*>;  // size in floats, buffer
  std::mutex mutex;
  std::list<Entry> by_age;
  std::unordered_map<int64_t, std::deque<std::list<Entry>::iterator>> by_size;  // oldest first
  int64_t cached_bytes = 0;

  float* take(int64_t size) {
    auto it = by_size.find(size);
    if (it == by_size.end() || it->second.empty()) return nullptr;
    auto entry = it->second.back();  // the most recently freed: likeliest still in cache
    it->second.pop_back();
    float* p = entry->second;
    by_age.erase(entry);
    cached_bytes -= bytes_of(size);
    return p;
  }
  void put(int64_t size, float* p) {
    by_size[size].push_back(by_age.insert(by_age.end(), {size, p}));
    cached_bytes += bytes_of(size);
  }
  void evict_oldest() {
    const Entry e = by_age.front();
    by_size[e.first].pop_front();  // the oldest of its size is the oldest entry of that size
    by_age.pop_front();
    cached_bytes -= bytes_of(e.first);
    std::free(e.second);
  }
  void clear() {
    for (const Entry& e : by_age) std::free(e.second);
    by_age.clear();
    by_size.clear();
    cached_bytes = 0;
  }
  ~BufferCache() { clear(); }
};

BufferCache& cache() {
  static BufferCache instance;
  return instance;
}

float* allocate(int64_t size) {
  if (size >= kMinCachedFloats) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (float* p = c.take(size)) return p;
  }
  size_t bytes = static_cast<size_t>(size > 0 ? size : 1) * sizeof(float);
  bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

void deallocate(float* p, int64_t size) {
  if (size >= kMinCachedFloats) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    const int64_t bytes = bytes_of(size);
    const int64_t limit = std::max(kCacheFloorBytes, 2 * g_peak_live_bytes.load());
    if (bytes <= limit) {
      while (c.cached_bytes + bytes > limit) c.evict_oldest();
      c.put(size, p);
      return;
    }
  }
  std::free(p);
}

}  // namespace

Storage::Storage(int64_t size) : data_(nullptr), size_(size) {
  MINIDL_CHECK(size >= 0, "Storage: size must be >= 0, got ", size);
  data_ = allocate(size);
  g_total_bytes += bytes_of(size);
  const int64_t live = g_live_bytes += bytes_of(size);
  int64_t peak = g_peak_live_bytes.load();
  while (live > peak && !g_peak_live_bytes.compare_exchange_weak(peak, live)) {
  }
}

Storage::~Storage() {
  deallocate(data_, size_);
  g_live_bytes -= bytes_of(size_);
}

int64_t Storage::total_bytes_allocated() { return g_total_bytes.load(); }
int64_t Storage::live_bytes() { return g_live_bytes.load(); }
int64_t Storage::cached_bytes() {
  BufferCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.cached_bytes;
}
void Storage::release_cached() {
  BufferCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.clear();
}

}  // namespace minidl
