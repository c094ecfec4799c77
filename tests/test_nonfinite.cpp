// A NaN or Inf in the middle of training (--on-nonfinite stop|skip-step): the step, the first
// layer at fault and the lr are named; stop keeps the last good checkpoint; skip-step leaves the
// parameters and BN buffers exactly as before the step. The faults come from two layers the
// test registers, as a user registers their own: one whose output turns infinite on demand, one
// whose forward is finite and whose backward is NaN (d sqrt(0 * x) / dx = 0 * inf).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "minidl/checkpoint.h"
#include "minidl/kernels/elementwise.h"
#include "minidl/nn/registry.h"
#include "minidl/ops.h"
#include "minidl/train/trainer.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

using namespace minidl;

namespace {

bool g_poison = false;  // while set, test_poison's output is +inf

class Poison : public Module {
 public:
  Tensor forward(const Tensor& x) override { return g_poison ? mul(x, std::numeric_limits<float>::infinity()) : x; }
  std::string describe() const override { return "Poison()"; }
};

class NanGrad : public Module {
 public:
  Tensor forward(const Tensor& x) override { return add(x, sqrt(mul(x, 0.0f))); }
  std::string describe() const override { return "NanGrad()"; }
};

MINIDL_REGISTER_LAYER(test_poison, {"test_poison", "test_poison", {},
    [](const LayerArgs&, const LayerContext& ctx) -> BuiltLayer { return {std::make_shared<Poison>(), ctx.input}; }});
MINIDL_REGISTER_LAYER(test_nan_grad, {"test_nan_grad", "test_nan_grad", {},
    [](const LayerArgs&, const LayerContext& ctx) -> BuiltLayer { return {std::make_shared<NanGrad>(), ctx.input}; }});

Mnist tiny_data(const std::string& dir) {
  minidl::testing::write_synthetic_mnist(dir, 256, 64);
  return load_mnist(dir);
}

TrainConfig spec_config(const std::string& spec) {
  TrainConfig c;
  c.model.kind = ModelKind::Spec;
  c.model.arch = spec;
  c.model.input_shape = {1, 28, 28};
  c.model.classes = 10;
  c.lr = 0.05f;
  c.batch_size = 32;
  c.seed = 5;
  c.eval_every = 0;
  c.steps = 6;
  return c;
}

const char* kPoisonSpec = "flatten linear(32) bn test_poison relu linear(10)";

std::vector<std::vector<float>> state(const Net& net) {
  std::vector<std::vector<float>> out;
  for (auto& t : net.state_dict()) out.push_back(t.tensor.to_vector());  // parameters and BN buffers
  return out;
}

struct PoisonAt {  // poisons the forward of one step
  int64_t step;
  void arm(TrainCallbacks& cb, std::vector<std::vector<float>>* before, const Net* net) {
    const int64_t s = step;
    g_poison = s == 1;
    cb.on_step = [s, before, net](int64_t done, int64_t, double, double, double) {
      if (done == s - 1) {
        g_poison = true;
        if (before) *before = state(*net);
      }
    };
  }
};

}  // namespace

TEST_CASE("nonfinite: stop names the step, the first infinite layer and the lr, and keeps the checkpoint", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = spec_config(kPoisonSpec);
  c.checkpoint_dir = d.path() + "/ckpt";
  c.checkpoint_every = 2;
  auto net = make_model(c.model);
  TrainCallbacks cb;
  std::vector<std::vector<float>> at_2;
  PoisonAt{3}.arm(cb, &at_2, net.get());
  const TrainResult r = train(*net, data, c, cb);
  g_poison = false;
  REQUIRE(r.diverged);
  CHECK(r.diverged_step == 3);
  CHECK(r.diverged_reason ==
        "step 3: the loss is nan; the first layer whose output is not finite: '3:test_poison'; lr 0.05");
  // The checkpoint is step 2's, whole.
  auto saved = load_model(c.checkpoint_dir + "/model.safetensors");
  CHECK(state(*saved) == at_2);
}

TEST_CASE("nonfinite: a NaN gradient behind finite outputs names the parameter", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = spec_config("flatten linear(32) test_nan_grad relu linear(10)");
  c.lr = 0.1f;
  auto net = make_model(c.model);
  const TrainResult r = train(*net, data, c);
  REQUIRE(r.diverged);
  CHECK(r.diverged_step == 1);
  CHECK(r.diverged_reason == "step 1: the gradient of '1.weight' is not finite; every layer's output is finite; lr 0.1");
}

TEST_CASE("nonfinite: skip-step leaves parameters and BN buffers as they were and trains on", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = spec_config(kPoisonSpec);
  c.on_nonfinite = OnNonFinite::SkipStep;
  auto net = make_model(c.model);
  TrainCallbacks cb;
  std::vector<std::vector<float>> at_2, at_skip;
  PoisonAt{3}.arm(cb, &at_2, net.get());
  int64_t skipped_step = -1;
  std::string why;
  cb.on_skipped_step = [&](int64_t step, const std::string& w) {
    skipped_step = step;
    why = w;
    at_skip = state(*net);
    g_poison = false;
  };
  const TrainResult r = train(*net, data, c, cb);
  REQUIRE_FALSE(r.diverged);
  CHECK(r.steps == 6);
  CHECK(r.skipped_steps == 1);
  CHECK(skipped_step == 3);
  CHECK(why == "the loss is nan; the first layer whose output is not finite: '3:test_poison'; lr 0.05");
  CHECK(at_skip == at_2);  // nothing moved, running statistics and num_batches_tracked included
  CHECK(state(*net) != at_2);  // and the later steps trained
  CHECK(std::isfinite(r.final_eval.loss));
}

TEST_CASE("nonfinite: skip-step gives up after 10 skipped steps in a row", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = spec_config(kPoisonSpec);
  c.on_nonfinite = OnNonFinite::SkipStep;
  c.steps = 40;
  auto net = make_model(c.model);
  g_poison = true;
  const TrainResult r = train(*net, data, c);
  g_poison = false;
  REQUIRE(r.diverged);
  CHECK(r.skipped_steps == 10);
  CHECK(r.diverged_step == 11);
  CHECK(r.diverged_reason.find("(10 steps in a row were skipped)") != std::string::npos);
}

TEST_CASE("nonfinite: all_finite finds a NaN or an Inf at any position and passes every finite value", "[kernels]") {
  for (int64_t n : {1, 7, 4095, 4096, 4097, 10000}) {
    std::vector<float> v(static_cast<size_t>(n), 1.0f);
    v[0] = std::numeric_limits<float>::max();
    v[static_cast<size_t>(n) / 2] = -std::numeric_limits<float>::denorm_min();
    REQUIRE(kernels::all_finite(v.data(), n));
    for (int64_t at : {int64_t{0}, n / 3, n - 1}) {
      for (float bad : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
        std::vector<float> w = v;
        w[static_cast<size_t>(at)] = bad;
        INFO("n " << n << " at " << at << " value " << bad);
        REQUIRE_FALSE(kernels::all_finite(w.data(), n));
      }
    }
  }
  REQUIRE(kernels::all_finite(nullptr, 0));
}
