// A residual block, out = body(x) + shortcut(x), as in He et al. 2016 (arXiv 1512.03385).
//
// The shortcut is the identity when the body keeps the shape, else a projection: a 1x1
// convolution with the stride that maps the input's plane onto the body's output plane (a
// linear layer for flat inputs), followed by the body's last normalization layer, as
// torchvision's BasicBlock downsample (conv1x1 + BatchNorm). The activation after the sum is
// not part of the block: write it after it (`res(...) relu`).
//
// Children, for state-dict names: "body" (a Sequential) and, when it projects, "proj" (a
// Sequential). The PyTorch module of the same tree (scripts/pytorch_peer.py, Residual) loads
// the state dict with strict=True.
#pragma once

#include <memory>

#include "minidl/nn/module.h"

namespace minidl {

class Residual : public Module {
 public:
  // proj may be null: the identity shortcut.
  Residual(std::shared_ptr<Module> body, std::shared_ptr<Module> proj);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return proj_ ? "Residual(projection)" : "Residual"; }
  const std::shared_ptr<Module>& body() const { return body_; }
  const std::shared_ptr<Module>& proj() const { return proj_; }

 private:
  std::shared_ptr<Module> body_, proj_;
};

}  // namespace minidl
