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

namespace minidl::kernels {

// y[i] = 1 / (1 + exp(-x[i])). With AVX-512, exp is minidl's vectorised one (Cephes' expf
// polynomial after reduction by ln 2, scaled by vscalefps): within 2 ulp of glibc's expf
// (tests/test_fused.cpp sweeps it), and the
// same for a value wherever it sits in the array (tails use masked vectors, not a scalar loop).
// Without AVX-512: std::exp. The sigmoid op and the fused blocks both call this, so they agree
// bit for bit.
void sigmoid(const float* x, float* y, int64_t n);
// y[i] = tanh(x[i]); with AVX-512 vectorised likewise (Cephes' tanhf: an odd polynomial below
// |x| = 0.625, 1 - 2/(exp(2|x|) + 1) above), within 3 ulp of std::tanh (tested).
void tanh(const float* x, float* y, int64_t n);
// exp of each value by the same method as sigmoid (for tests and benchmarks).
void exp_vectorised(const float* x, float* y, int64_t n);

}  // namespace minidl::kernels
