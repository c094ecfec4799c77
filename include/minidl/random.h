// The project's own random number generator: PCG32 (O'Neill 2014). Unlike std::mt19937 with
// std::uniform_real_distribution / std::normal_distribution, its output is specified here and
// is the same on every platform and standard library for a given seed.
#pragma once

#include <cstdint>

namespace minidl {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { seed_with(seed); }

  void seed_with(uint64_t seed);
  uint32_t next_u32();
  // Uniform in [0, 1) with 24 random bits.
  float uniform();
  // Uniform integer in [0, n), without modulo bias.
  uint32_t below(uint32_t n);
  // Standard normal by Box-Muller (no cached second value, so the stream is simple to resume).
  float normal();

  // Full state, for saving and resuming a training run exactly.
  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

 private:
  uint64_t state_ = 0;
  static constexpr uint64_t kIncrement = 1442695040888963407ULL;  // any odd constant
};

}  // namespace minidl
