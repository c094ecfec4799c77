#include "minidl/profiler.h"

#include <mutex>

namespace minidl {

namespace {
thread_local bool t_enabled = false;
thread_local const char* t_layer = nullptr;
std::mutex g_mutex;
std::map<std::string, OpTiming>& timings() {
  static std::map<std::string, OpTiming> table;
  return table;
}
}  // namespace

LayerScope::LayerScope(const char* name) : previous_(t_layer) { t_layer = name; }
LayerScope::~LayerScope() { t_layer = previous_; }
const char* LayerScope::current() { return t_layer; }

void Profiler::enable(bool on) { t_enabled = on; }
bool Profiler::enabled() { return t_enabled; }

void Profiler::reset() {
  std::lock_guard<std::mutex> lock(g_mutex);
  timings().clear();
}

std::map<std::string, OpTiming> Profiler::table() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return timings();
}

void Profiler::add(const char* op, bool backward, double seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  OpTiming& t = timings()[op];
  if (backward) {
    t.backward_seconds += seconds;
    ++t.backward_calls;
  } else {
    t.forward_seconds += seconds;
    ++t.forward_calls;
  }
}

}  // namespace minidl
