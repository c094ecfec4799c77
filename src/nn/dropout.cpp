#include "minidl/nn/dropout.h"

#include "minidl/nn/registry.h"
#include "minidl/ops.h"

namespace minidl {

Dropout::Dropout(float p, uint64_t seed) : p_(p), gen_(seed) {
  MINIDL_CHECK(p >= 0.0f && p < 1.0f, "Dropout: p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0f) return x;
  // The mask is a constant of the op: mul's backward then sends each gradient through the
  // same mask and scale.
  Tensor mask = Tensor::empty(x.shape());
  const float keep_scale = 1.0f / (1.0f - p_);
  for (int64_t i = 0; i < mask.numel(); ++i) mask.data()[i] = gen_.uniform() < p_ ? 0.0f : keep_scale;
  return mul(x, mask);
}

std::string Dropout::describe() const { return detail::concat("Dropout(p=", p_, ")"); }

}  // namespace minidl

// --- spec layer (nn/registry.h) ----------------------------------------------
namespace minidl {
MINIDL_REGISTER_LAYER(dropout, {"dropout", "dropout(p=0.5)", {{"p", ParamType::Float, "0.5"}},
    [](const LayerArgs& a, const LayerContext& ctx) -> BuiltLayer {
      const float p = a.get_float("p");
      if (!(p >= 0 && p < 1)) throw SpecError(detail::concat("'p' must be in [0, 1), got ", p));
      return {std::make_shared<Dropout>(p, ctx.seed("dropout")), ctx.input};
    }});
}  // namespace minidl
