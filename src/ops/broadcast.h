// Strided iteration for broadcasting elementwise ops, and the reduction that undoes a
// broadcast in backward. Internal to the ops layer.
#pragma once

#include <vector>

#include "minidl/tensor.h"

namespace minidl::detail {

// out = f(a, b) over a and b broadcast to out's shape. Dimensions are coalesced where both
// operands walk them contiguously (or both stand still), so [N, C, H, W] with [1, C, 1, 1]
// runs as [N, C, H*W] with the inner loop over H*W.
struct BroadcastPlan {
  std::vector<int64_t> shape;  // coalesced output shape
  std::vector<int64_t> sa, sb; // strides of a and b in elements (0 on broadcast dimensions)
  int64_t numel = 1;
};

BroadcastPlan make_broadcast_plan(const Shape& a, const Shape& b, const Shape& out);

template <class F>
void for_each_broadcast(const BroadcastPlan& plan, const float* a, const float* b, float* out, F f) {
  const size_t r = plan.shape.size();
  if (r == 0) {
    if (plan.numel) out[0] = f(a[0], b[0]);
    return;
  }
  const int64_t L = plan.shape[r - 1], ia = plan.sa[r - 1], ib = plan.sb[r - 1];
  if (L == 0) return;
  const int64_t outer = plan.numel / L;
  std::vector<int64_t> index(r - 1, 0);
  int64_t oa = 0, ob = 0;
  for (int64_t o = 0; o < outer; ++o) {
    const float* pa = a + oa;
    const float* pb = b + ob;
    float* po = out + o * L;
    if (ia == 1 && ib == 1) {
      for (int64_t i = 0; i < L; ++i) po[i] = f(pa[i], pb[i]);
    } else if (ia == 1 && ib == 0) {
      const float vb = *pb;
      for (int64_t i = 0; i < L; ++i) po[i] = f(pa[i], vb);
    } else if (ia == 0 && ib == 1) {
      const float va = *pa;
      for (int64_t i = 0; i < L; ++i) po[i] = f(va, pb[i]);
    } else {
      for (int64_t i = 0; i < L; ++i) po[i] = f(pa[i * ia], pb[i * ib]);
    }
    for (size_t d = r - 1; d-- > 0;) {
      oa += plan.sa[d];
      ob += plan.sb[d];
      if (++index[d] < plan.shape[d]) break;
      oa -= plan.sa[d] * plan.shape[d];
      ob -= plan.sb[d] * plan.shape[d];
      index[d] = 0;
    }
  }
}

// Sums x over the flagged axes, keeping them with size 1, in double; the sums are multiplied by
// scale (in double, before rounding to float: a mean is exact to float rounding).
Tensor reduce_sum_keepdim(const Tensor& x, const std::vector<bool>& reduced, double scale = 1.0);

// Reduces a gradient of a broadcast result back to an operand's shape (no autograd).
Tensor sum_to(const Tensor& g, const Shape& shape);

// Copies x broadcast to shape (no autograd).
Tensor expand(const Tensor& x, const Shape& shape);

}  // namespace minidl::detail
