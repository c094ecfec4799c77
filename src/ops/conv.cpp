// conv2d and max_pool2d ops over the kernels in kernels/.
#include <omp.h>

#include <algorithm>
#include <memory>

#include "minidl/autograd.h"
#include "minidl/profiler.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/max_pool2d.h"
#include "minidl/ops.h"

namespace minidl {

namespace {
// groups > 1, shapes already checked by conv2d: the direct kernel, and its backward on the tape.
Tensor grouped_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const kernels::Conv2dGeometry& g,
                      int64_t groups) {
  Tensor y = Tensor::empty({g.N, g.O, g.out_h(), g.out_w()});
  const int threads = std::max(1, omp_get_max_threads());
  kernels::grouped_conv2d_forward(x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data(), g, groups,
                                  threads);
  if (!needs_grad({&x, &weight, &bias})) return y;
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "conv2d", {x, weight, bias},
                [sx, sw, g, groups, threads](const Tensor& dy, const std::vector<bool>& needs) {
                  Tensor dx = needs[0] ? Tensor::empty(sx.shape()) : Tensor();
                  Tensor dw = needs[1] ? Tensor::zeros(sw.shape()) : Tensor();
                  Tensor db = needs[2] ? Tensor::zeros({g.O}) : Tensor();
                  kernels::grouped_conv2d_backward(sx.data(), sw.data(), dy.data(), needs[0] ? dx.data() : nullptr,
                                                   needs[1] ? dw.data() : nullptr, needs[2] ? db.data() : nullptr, g,
                                                   groups, threads);
                  return std::vector<Tensor>{dx, dw, db};
                });
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding,
              int64_t groups) {
  ProfileScope scope("conv2d");
  MINIDL_CHECK(x.defined() && x.dim() == 4, "conv2d: input must be 4-D (N, C, H, W), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  MINIDL_CHECK(weight.defined() && weight.dim() == 4, "conv2d: weight must be 4-D (O, C, KH, KW), got ",
               weight.defined() ? shape_to_string(weight.shape()) : "(undefined)");
  MINIDL_CHECK(groups >= 1, "conv2d: groups must be >= 1, got ", groups);
  MINIDL_CHECK(weight.size(1) * groups == x.size(1), "conv2d: weight ", shape_to_string(weight.shape()), " with groups=",
               groups, " expects ", weight.size(1) * groups, " input channels, input ", shape_to_string(x.shape()),
               " has ", x.size(1));
  MINIDL_CHECK(weight.size(0) % groups == 0, "conv2d: ", weight.size(0), " output channels are not divisible by groups=",
               groups);
  MINIDL_CHECK(stride >= 1, "conv2d: stride must be >= 1, got ", stride);
  MINIDL_CHECK(padding >= 0, "conv2d: padding must be >= 0, got ", padding);
  const kernels::Conv2dGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), weight.size(0), weight.size(2),
                                  weight.size(3), stride, padding};
  MINIDL_CHECK(x.size(2) + 2 * padding >= g.KH && x.size(3) + 2 * padding >= g.KW, "conv2d: kernel ", g.KH, "x", g.KW,
               " is larger than the padded input ", x.size(2) + 2 * padding, "x", x.size(3) + 2 * padding);
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == g.O, "conv2d: bias must be [", g.O, "], got ",
                 shape_to_string(bias.shape()));
  if (groups > 1) return grouped_conv2d(x, weight, bias, g, groups);
  Tensor y = Tensor::empty({g.N, g.O, g.out_h(), g.out_w()});
  const int threads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(g.N)));
  {
    Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
    kernels::conv2d_forward(x.data(), weight.data(), bias.defined() ? bias.data() : nullptr, y.data(), workspace.data(),
                            g, threads);
  }
  if (!needs_grad({&x, &weight, &bias})) return y;
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "conv2d", {x, weight, bias}, [sx, sw, g, threads](const Tensor& dy, const std::vector<bool>& needs) {
    Tensor dx = needs[0] ? Tensor::empty(sx.shape()) : Tensor();
    Tensor dw = needs[1] ? Tensor::zeros(sw.shape()) : Tensor();
    Tensor db = needs[2] ? Tensor::zeros({g.O}) : Tensor();
    Tensor workspace = Tensor::empty({kernels::conv2d_workspace_size(g, threads)});
    kernels::conv2d_backward(sx.data(), sw.data(), dy.data(), needs[0] ? dx.data() : nullptr,
                             needs[1] ? dw.data() : nullptr, needs[2] ? db.data() : nullptr, workspace.data(), g,
                             threads);
    return std::vector<Tensor>{dx, dw, db};
  });
}

namespace {
// A pooling window's checks (4-D input, positive kernel and stride, the window inside the plane)
// and its output plane; stride 0 becomes the kernel.
struct PoolShape {
  int64_t H, W, OH, OW, planes, stride;
};
PoolShape pool_shape(const char* op, const Tensor& x, int64_t kernel, int64_t stride) {
  if (stride == 0) stride = kernel;
  MINIDL_CHECK(x.defined() && x.dim() == 4, op, ": input must be 4-D (N, C, H, W), got ",
               x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  MINIDL_CHECK(kernel >= 1 && stride >= 1, op, ": kernel and stride must be >= 1, got ", kernel, " and ", stride);
  const int64_t H = x.size(2), W = x.size(3);
  MINIDL_CHECK(H >= kernel && W >= kernel, op, ": kernel ", kernel, " is larger than the input plane ", H, "x", W);
  return {H, W, (H - kernel) / stride + 1, (W - kernel) / stride + 1, x.size(0) * x.size(1), stride};
}
}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride) {
  ProfileScope scope("max_pool2d");
  const PoolShape g = pool_shape("max_pool2d", x, kernel, stride);
  const int64_t H = g.H, W = g.W, OH = g.OH, OW = g.OW, planes = g.planes;
  stride = g.stride;
  Tensor y = Tensor::empty({x.size(0), x.size(1), OH, OW});
  // The argmax indices live in a tensor Storage (4-byte slots, like the floats) so that they
  // come from the recycled buffers instead of fresh pages every step.
  auto argmax = std::make_shared<Storage>(y.numel());
  static_assert(sizeof(int32_t) == sizeof(float), "argmax indices share float storage");
  kernels::max_pool2d_forward(x.data(), y.data(), reinterpret_cast<int32_t*>(argmax->data()), planes, H, W, kernel,
                              stride);
  const Shape in_shape = x.shape();
  return record(y, "max_pool2d", {x}, [argmax, in_shape, planes, H, W, OH, OW](const Tensor& dy, const std::vector<bool>&) {
    Tensor dx = Tensor::zeros(in_shape);
    kernels::max_pool2d_backward(dy.data(), reinterpret_cast<const int32_t*>(argmax->data()), dx.data(), planes, H, W,
                                 OH, OW);
    return std::vector<Tensor>{dx};
  });
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride) {
  ProfileScope scope("avg_pool2d");
  const PoolShape g = pool_shape("avg_pool2d", x, kernel, stride);
  const int64_t H = g.H, W = g.W, OH = g.OH, OW = g.OW, planes = g.planes;
  stride = g.stride;
  Tensor y = Tensor::empty({x.size(0), x.size(1), OH, OW});
  const float inv = 1.0f / static_cast<float>(kernel * kernel);
  const float* in = x.data();
  float* out = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float s = 0.0f;  // row by row, as PyTorch's CPU kernel sums a window
        for (int64_t i = 0; i < kernel; ++i)
          for (int64_t j = 0; j < kernel; ++j) s += in[(p * H + oh * stride + i) * W + ow * stride + j];
        out[(p * OH + oh) * OW + ow] = s * inv;
      }
  const Shape in_shape = x.shape();
  return record(y, "avg_pool2d", {x}, [in_shape, planes, H, W, OH, OW, kernel, stride, inv](const Tensor& dy, const std::vector<bool>&) {
    Tensor dx = Tensor::zeros(in_shape);
    const float* d = dy.data();
    float* o = dx.data();
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const float v = d[(p * OH + oh) * OW + ow] * inv;
          for (int64_t i = 0; i < kernel; ++i)
            for (int64_t j = 0; j < kernel; ++j) o[(p * H + oh * stride + i) * W + ow * stride + j] += v;
        }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace minidl
