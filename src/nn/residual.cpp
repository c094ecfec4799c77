#include "minidl/nn/residual.h"

#include "minidl/nn/registry.h"
#include "minidl/nn/spec.h"
#include "minidl/ops.h"

namespace minidl {

Residual::Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> proj) : body_(std::move(body)), proj_(std::move(proj)) {
  MINIDL_CHECK(body_, "Residual: needs a body");
  register_module("body", body_);
  if (proj_) register_module("proj", proj_);
}

Tensor Residual::forward(const Tensor& x) {
  Tensor y = body_->forward(x);
  Tensor shortcut = proj_ ? proj_->forward(x) : x;
  MINIDL_CHECK(y.shape() == shortcut.shape(), "Residual: the body gives ", shape_to_string(y.shape()),
               " and the shortcut ", shape_to_string(shortcut.shape()), "; they must match");
  return add(y, shortcut);
}

namespace {
// The stride s of a 1x1 convolution that maps a plane of `in` onto `out`: (in - 1) / s + 1 == out.
int64_t projection_stride(int64_t in, int64_t out) {
  for (int64_t s = 1; s <= in; ++s)
    if ((in - 1) / s + 1 == out) return s;
  return 0;
}
}  // namespace

MINIDL_REGISTER_LAYER(res, {"res", "res(LAYERS...)", {},
    [](const LayerArgs&, const LayerContext& ctx) -> BuiltLayer {
      MINIDL_CHECK(ctx.body && ctx.build_body, "res: built without its body");
      BuiltBody body = ctx.build_body(*ctx.body, ctx.input);
      BuiltLayer out{nullptr, body.output, body.weight_macs};
      if (body.output == ctx.input) {
        out.module = std::make_shared<Residual>(body.module, nullptr);
        return out;
      }
      std::string proj;
      if (ctx.input.size() == 3 && body.output.size() == 3) {
        const int64_t sh = projection_stride(ctx.input[1], body.output[1]);
        const int64_t sw = projection_stride(ctx.input[2], body.output[2]);
        if (sh == 0 || sh != sw)
          throw SpecError(detail::concat("the body maps ", shape_to_string(ctx.input), " to ",
                                         shape_to_string(body.output),
                                         "; no 1x1 convolution with one stride maps the first plane onto the second"));
        proj = detail::concat("conv(", body.output[0], ",1,stride=", sh, ")");
      } else if (ctx.input.size() == 1 && body.output.size() == 1) {
        proj = detail::concat("linear(", body.output[0], ")");
      } else {
        throw SpecError(detail::concat("the body maps ", shape_to_string(ctx.input), " to ", shape_to_string(body.output),
                                       "; a residual block keeps the rank (both [C, H, W] or both [F])"));
      }
      if (!body.last_normalization.empty()) proj += " " + body.last_normalization;
      BuiltBody shortcut = ctx.build_body(parse_spec(proj), ctx.input);
      out.weight_macs.insert(out.weight_macs.end(), shortcut.weight_macs.begin(), shortcut.weight_macs.end());
      out.module = std::make_shared<Residual>(body.module, shortcut.module);
      return out;
    },
    false, false, true});

}  // namespace minidl
