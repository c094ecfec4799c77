// An op-level profiler for `minidl bench --profile`: while enabled, every op's forward and
// every node's backward add their wall time to a table keyed by op name. Disabled (the
// default) it costs one thread-local flag test per op.
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

// Times the enclosing scope as op's forward (or backward).
class ProfileScope {
 public:
  explicit ProfileScope(const char* op, bool backward = false)
      : op_(Profiler::enabled() ? op : nullptr), backward_(backward) {
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
