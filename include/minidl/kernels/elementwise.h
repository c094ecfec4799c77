// Flat elementwise loops over contiguous floats. (Broadcasting lives in the ops layer.)
#pragma once

#include <cstdint>

namespace minidl::kernels {

// out[i] = a[i] + b[i]
void add(const float* a, const float* b, float* out, int64_t n);
// dst[i] += src[i]
void add_inplace(float* dst, const float* src, int64_t n);
// true when every value is finite
bool all_finite(const float* x, int64_t n);

}  // namespace minidl::kernels
