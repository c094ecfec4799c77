#include "minidl/random.h"

#include <cmath>

namespace minidl {

void Generator::seed_with(uint64_t seed) {
  // PCG32's reference seeding: advance once, add the seed, advance again.
  state_ = 0;
  next_u32();
  state_ += seed;
  next_u32();
}

uint32_t Generator::next_u32() {
  uint64_t old = state_;
  state_ = old * 6364136223846793005ULL + kIncrement;
  uint32_t xorshifted = static_cast<uint32_t>(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = static_cast<uint32_t>(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

float Generator::uniform() { return static_cast<float>(next_u32() >> 8) * (1.0f / 16777216.0f); }

uint32_t Generator::below(uint32_t n) {
  // Lemire's rejection: discard the values that would bias the modulo.
  uint32_t threshold = static_cast<uint32_t>(-n) % n;
  for (;;) {
    uint32_t r = next_u32();
    if (r >= threshold) return r % n;
  }
}

float Generator::normal() {
  // u1 in (0, 1] so the log is finite.
  double u1 = (static_cast<double>(next_u32()) + 1.0) / 4294967296.0;
  double u2 = static_cast<double>(next_u32()) / 4294967296.0;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace minidl
