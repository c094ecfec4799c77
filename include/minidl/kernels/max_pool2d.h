// Max pooling over (N*C) independent planes.
//
// x: (P, H, W) -> y: (P, OH, OW), OH = (H - kernel) / stride + 1; argmax: (P, OH, OW), the offset
// within the input plane of each window's first maximum. Backward sends each dy to its argmax.
#pragma once

#include <cstdint>

namespace minidl::kernels {

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t H, int64_t W,
                        int64_t kernel, int64_t stride);
// dx += scatter of dy to argmax.
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t H, int64_t W,
                         int64_t OH, int64_t OW);

}  // namespace minidl::kernels
