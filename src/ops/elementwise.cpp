// Elementwise ops: broadcasting binary ops and unary ops, each with its backward.
#include <algorithm>
#include <cmath>

#include "minidl/kernels/elementwise.h"

#include "minidl/autograd.h"
#include "minidl/profiler.h"
#include "minidl/kernels/activation.h"
#include "minidl/ops.h"
#include "ops/broadcast.h"

namespace minidl {

namespace {

template <class F>
Tensor binary_forward(const Tensor& a, const Tensor& b, const char* name, F f) {
  ProfileScope scope(name);
  MINIDL_CHECK(a.defined() && b.defined(), name, ": operand is undefined");
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape);
  const float* pa = a.data();
  const float* pb = b.data();
  float* po = out.data();
  const int64_t n = out.numel();
  if (a.shape() == b.shape()) {
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else {
    detail::for_each_broadcast(detail::make_broadcast_plan(a.shape(), b.shape(), out_shape), pa, pb, po, f);
  }
  return out;
}

// One unary op: forward y = f(x), backward dx = df(g, x, y). Backward keeps x and/or y alive
// only when df reads them.
// With Bulk, f maps a whole range: f(x, y, count) (a vectorised kernel); else f maps one value.
template <bool Bulk = false, class F, class DF>
Tensor unary_op(const Tensor& x, const char* name, bool keep_x, bool keep_y, F f, DF df) {
  ProfileScope scope(name);
  MINIDL_CHECK(x.defined(), name, ": input is undefined");
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
  if constexpr (Bulk) {
    constexpr int64_t kChunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i += kChunk) f(px + i, py + i, std::min(kChunk, n - i));
  } else {
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
  }
  if (!needs_grad({&x})) return y;
  Tensor saved_x = keep_x ? x.detach() : Tensor();
  Tensor saved_y = keep_y ? y.detach() : Tensor();
  return record(y, name, {x}, [saved_x, saved_y, df](const Tensor& g, const std::vector<bool>&) {
    Tensor dx = Tensor::empty(g.shape());
    const float* pg = g.data();
    const float* sx = saved_x.defined() ? saved_x.data() : pg;
    const float* sy = saved_y.defined() ? saved_y.data() : pg;
    float* pd = dx.data();
    const int64_t m = g.numel();
#pragma omp parallel for simd if (m > (1 << 16))
    for (int64_t i = 0; i < m; ++i) pd[i] = df(pg[i], sx[i], sy[i]);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "add", [](float x, float y) { return x + y; });
  const Shape as = a.shape(), bs = b.shape();
  return record(out, "add", {a, b}, [as, bs](const Tensor& g, const std::vector<bool>& needs) {
    return std::vector<Tensor>{needs[0] ? detail::sum_to(g, as) : Tensor(), needs[1] ? detail::sum_to(g, bs) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "sub", [](float x, float y) { return x - y; });
  const Shape as = a.shape(), bs = b.shape();
  return record(out, "sub", {a, b}, [as, bs](const Tensor& g, const std::vector<bool>& needs) {
    return std::vector<Tensor>{needs[0] ? detail::sum_to(g, as) : Tensor(),
                               needs[1] ? detail::sum_to(neg(g), bs) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "mul", [](float x, float y) { return x * y; });
  if (!needs_grad({&a, &b})) return out;
  Tensor sa = a.detach(), sb = b.detach();
  return record(out, "mul", {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
    return std::vector<Tensor>{needs[0] ? detail::sum_to(mul(g, sb), sa.shape()) : Tensor(),
                               needs[1] ? detail::sum_to(mul(g, sa), sb.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(a, b, "div", [](float x, float y) { return x / y; });
  if (!needs_grad({&a, &b})) return out;
  Tensor sa = a.detach(), sb = b.detach();
  return record(out, "div", {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
    return std::vector<Tensor>{needs[0] ? detail::sum_to(div(g, sb), sa.shape()) : Tensor(),
                               needs[1] ? detail::sum_to(neg(div(mul(g, sa), square(sb))), sb.shape()) : Tensor()};
  });
}

Tensor add(const Tensor& a, float b) {
  return unary_op(a, "add_scalar", false, false, [b](float x) { return x + b; }, [](float g, float, float) { return g; });
}

Tensor mul(const Tensor& a, float b) {
  return unary_op(a, "mul_scalar", false, false, [b](float x) { return x * b; },
                  [b](float g, float, float) { return g * b; });
}

Tensor neg(const Tensor& x) {
  return unary_op(x, "neg", false, false, [](float v) { return -v; }, [](float g, float, float) { return -g; });
}

Tensor exp(const Tensor& x) {
  return unary_op(x, "exp", false, true, [](float v) { return std::exp(v); },
                  [](float g, float, float y) { return g * y; });
}

Tensor log(const Tensor& x) {
  return unary_op(x, "log", true, false, [](float v) { return std::log(v); },
                  [](float g, float v, float) { return g / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary_op(x, "sqrt", false, true, [](float v) { return std::sqrt(v); },
                  [](float g, float, float y) { return g * 0.5f / y; });
}

Tensor rsqrt(const Tensor& x) {
  // y = x^(-1/2), dy/dx = -1/2 x^(-3/2) = -y^3 / 2
  return unary_op(x, "rsqrt", false, true, [](float v) { return 1.0f / std::sqrt(v); },
                  [](float g, float, float y) { return -0.5f * g * y * y * y; });
}

Tensor pow(const Tensor& x, float exponent) {
  return unary_op(x, "pow", true, false, [exponent](float v) { return std::pow(v, exponent); },
                  [exponent](float g, float v, float) { return g * exponent * std::pow(v, exponent - 1.0f); });
}

Tensor square(const Tensor& x) {
  return unary_op(x, "square", true, false, [](float v) { return v * v; },
                  [](float g, float v, float) { return 2.0f * g * v; });
}

namespace {
constexpr int64_t kActivationChunk = 1 << 14;  // values per call: the threads' share of the loop
}  // namespace

Tensor activation(const Tensor& x, kernels::Act a) {
  const kernels::ActInfo& info = kernels::act_info(a);
  ProfileScope scope(info.name);
  MINIDL_CHECK(x.defined(), info.name, ": input is undefined");
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
  constexpr int64_t kChunk = kActivationChunk;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; i += kChunk) kernels::activation_forward(a, px + i, py + i, std::min(kChunk, n - i));
  if (!needs_grad({&x})) return y;
  // The output always (every formula may read y); the input only when the derivative needs it.
  Tensor saved_x = info.needs_input ? x.detach() : Tensor();
  Tensor saved_y = y.detach();
  return record(y, info.name, {x}, [a, saved_x, saved_y](const Tensor& g, const std::vector<bool>&) {
    Tensor dx = Tensor::empty(g.shape());
    const float* sx = saved_x.defined() ? saved_x.data() : nullptr;
    const int64_t m = g.numel();
    constexpr int64_t kChunk = kActivationChunk;
#pragma omp parallel for schedule(static) if (m > (1 << 16))
    for (int64_t i = 0; i < m; i += kChunk)
      kernels::activation_backward(a, g.data() + i, sx ? sx + i : nullptr, saved_y.data() + i, dx.data() + i,
                                   std::min(kChunk, m - i));
    return std::vector<Tensor>{dx};
  });
}

Tensor sigmoid(const Tensor& x) { return activation(x, kernels::Act::Sigmoid); }
// As in PyTorch: the gradient at exactly 0 is 0; a NaN stays NaN and passes its gradient
// (torch.relu(nan) is nan, and its backward tests the output with <= 0).
Tensor relu(const Tensor& x) { return activation(x, kernels::Act::ReLU); }
Tensor tanh(const Tensor& x) { return activation(x, kernels::Act::Tanh); }

}  // namespace minidl
