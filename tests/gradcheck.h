// Gradient checking by central finite differences (test helper; also the one to use when you
// add a layer, see docs/extending.md "Add a layer").
//
// For f: inputs -> output, the scalar L = sum(output * r) with a fixed random r has
// dL/dx = the tape's gradient. gradcheck() compares it, element by element, with
// (L(x + eps) - L(x - eps)) / (2 eps), L accumulated in double.
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "minidl/autograd.h"
#include "minidl/ops.h"
#include "minidl/tensor.h"

namespace minidl::testing {

struct GradcheckOptions {
  double eps = 1e-2;
  double atol = 2e-3;
  double rtol = 1e-2;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  double worst_error = 0.0;  // max over elements of |analytic - numeric|
  std::string report;        // the first failures, for the test log
};

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Tensor& out, const Tensor& r) {
  double s = 0.0;
  for (int64_t i = 0; i < out.numel(); ++i) s += static_cast<double>(out.data()[i]) * r.data()[i];
  return s;
}

// Every input that requires grad is checked. Inputs are modified during the check and
// restored afterwards.
inline GradcheckResult gradcheck(const Function& f, std::vector<Tensor> inputs, GradcheckOptions opt = {}) {
  GradcheckResult result;
  std::ostringstream report;
  for (auto& x : inputs)
    if (x.requires_grad()) x.zero_grad();
  Tensor out = f(inputs);
  Generator gen(opt.seed);
  Tensor r = Tensor::normal(out.shape(), 0.0f, 1.0f, gen);
  Tensor loss = sum(mul(out, r));
  loss.backward();

  NoGradGuard no_grad;
  int failures = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor x = inputs[i];
    if (!x.requires_grad()) continue;
    Tensor analytic = x.grad();
    if (!analytic.defined()) {
      result.ok = false;
      report << "input " << i << ": no gradient reached it\n";
      continue;
    }
    for (int64_t j = 0; j < x.numel(); ++j) {
      float& v = x.data()[j];
      const float saved = v;
      v = static_cast<float>(saved + opt.eps);
      const double plus = weighted_sum(f(inputs), r);
      v = static_cast<float>(saved - opt.eps);
      const double minus = weighted_sum(f(inputs), r);
      v = saved;
      const double numeric = (plus - minus) / (2.0 * opt.eps);
      const double a = analytic.data()[j];
      const double err = std::abs(a - numeric);
      result.worst_error = std::max(result.worst_error, std::isnan(err) ? INFINITY : err);
      if (!(err <= opt.atol + opt.rtol * std::abs(numeric))) {
        result.ok = false;
        if (failures++ < 5)
          report << "input " << i << " element " << j << ": analytic " << a << ", numeric " << numeric << "\n";
      }
    }
  }
  result.report = report.str();
  return result;
}

// Random input of the given shape that requires grad.
inline Tensor random_input(const Shape& shape, Generator& gen, float low = -1.0f, float high = 1.0f) {
  Tensor t = Tensor::uniform(shape, low, high, gen);
  t.set_requires_grad(true);
  return t;
}

}  // namespace minidl::testing
