// Dropout, the worked example of docs/extending.md "Add a layer".
//
// Training: each element is zeroed with probability p and the survivors are scaled by
// 1/(1 - p), so the expected output equals the input (inverted dropout, as torch.nn.Dropout).
// Evaluation: the identity. The mask comes from the generator the layer was given, so a seeded
// run is reproducible.
#pragma once

#include "minidl/nn/module.h"
#include "minidl/random.h"

namespace minidl {

class Dropout : public Module {
 public:
  explicit Dropout(float p = 0.5f, uint64_t seed = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;

 private:
  float p_;
  Generator gen_;
};

}  // namespace minidl
