// The profiler behind `minidl bench --profile`: while enabled, every op's forward and every
// node's backward add their wall time to a table. The key is the enclosing layer's name when
// the op runs inside a LayerScope (the models name theirs: "conv1", "bn1", ...), else the op's
// name ("max_pool2d", "sigmoid"); a node remembers the layer it was recorded in, so backward
// time is filed under the same key. Disabled (the default) it costs a thread-local test per op.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace minidl {

struct OpTiming {
  double forward_seconds = 0.0, backward_seconds = 0.0;
  int64_t forward_calls = 0, backward_calls = 0;
};

class Profiler {
 public:
  static void enable(bool on);
  static bool enabled();
  static void reset();
  static std::map<std::string, OpTiming> table();
  static void add(const char* op, bool backward, double seconds);
};

// Names the layer whose forward runs in this scope (a string literal: it is kept by pointer).
class LayerScope {
 public:
  explicit LayerScope(const char* name);
  ~LayerScope();
  LayerScope(const LayerScope&) = delete;
  LayerScope& operator=(const LayerScope&) = delete;
  static const char* current();  // nullptr outside any layer

 private:
  const char* previous_;
};

// Times the enclosing scope as op's forward (or backward), under the current layer's name.
class ProfileScope {
 public:
  explicit ProfileScope(const char* op, bool backward = false)
      : op_(Profiler::enabled() ? (backward || !LayerScope::current() ? op : LayerScope::current()) : nullptr),
        backward_(backward) {
    if (op_) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (op_) Profiler::add(op_, backward_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* op_;
  bool backward_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace minidl
