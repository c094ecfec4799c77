// The training loop on tiny synthetic data: learning, determinism, exact resume, divergence.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "minidl/checkpoint.h"
#include "minidl/io/safetensors.h"
#include "minidl/train/trainer.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

using namespace minidl;

namespace {
Mnist tiny_data(const std::string& dir, int n_train = 256, int n_test = 64) {
  minidl::testing::write_synthetic_mnist(dir, n_train, n_test);
  return load_mnist(dir);
}

std::vector<std::vector<float>> weights(const Net& net) {
  std::vector<std::vector<float>> out;
  for (auto& t : net.state_dict()) out.push_back(t.tensor.to_vector());
  return out;
}

TrainConfig tiny_config(bool bn) {
  TrainConfig c;
  c.model = {ModelKind::Cnn, bn, Activation::ReLU, BatchNormImpl::Fused, 3, {}};
  c.lr = 0.05f;
  c.batch_size = 32;
  c.seed = 3;
  c.eval_every = 4;
  return c;
}
}  // namespace

TEST_CASE("train: a few epochs on synthetic data lower the loss and learn", "[train]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  for (bool bn : {false, true}) {
    TrainConfig c = tiny_config(bn);
    c.epochs = 3;
    auto net = make_model(c.model);
    const double before = evaluate(*net, data.test).loss;
    TrainResult r = train(*net, data, c);
    INFO("bn " << bn);
    REQUIRE_FALSE(r.diverged);
    REQUIRE(r.steps == 24);
    REQUIRE(r.curve.size() == 6);  // every 4 steps and at the end
    REQUIRE(r.final_eval.loss < 0.5 * before);
    REQUIRE(r.final_eval.accuracy > 0.8);
    REQUIRE(r.curve.back().train_loss < r.curve.front().train_loss);
  }
}

TEST_CASE("train: same seed and threads give bit-identical weights", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = tiny_config(true);
  c.steps = 10;
  auto a = make_model(c.model), b = make_model(c.model);
  train(*a, data, c);
  train(*b, data, c);
  REQUIRE(weights(*a) == weights(*b));
  TrainConfig other = c;
  other.seed = 4;  // another batch order
  auto e = make_model(c.model);
  train(*e, data, other);
  REQUIRE(weights(*e) != weights(*a));
}

TEST_CASE("train: two epochs in one go equal one epoch plus a resumed one, bit for bit", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path(), 250);  // 8 batches of 32, the last one partial
  for (OptimizerKind opt : {OptimizerKind::SGD, OptimizerKind::Adam}) {
    for (int64_t stop_at : {8, 5}) {  // at an epoch boundary and in the middle of an epoch
      TrainConfig c = tiny_config(true);
      c.optimizer = opt;
      c.lr = opt == OptimizerKind::Adam ? 0.002f : 0.05f;
      c.steps = 16;
      auto straight = make_model(c.model);
      train(*straight, data, c);

      TrainConfig first = c;
      first.steps = stop_at;
      first.checkpoint_dir = d.path() + "/ckpt";
      first.checkpoint_every = stop_at;
      auto part = make_model(c.model);
      train(*part, data, first);
      TrainConfig rest = c;
      rest.checkpoint_dir = first.checkpoint_dir;
      rest.resume = true;
      auto resumed = make_model(c.model);  // fresh weights: everything must come from the checkpoint
      TrainResult r = train(*resumed, data, rest);
      INFO("optimizer " << to_string(opt) << " stop at " << stop_at);
      REQUIRE(r.steps == 16);
      REQUIRE(weights(*resumed) == weights(*straight));
      // the model file alone is an ordinary checkpoint
      auto loaded = load_model(first.checkpoint_dir + "/model.safetensors");
      REQUIRE(loaded->config().batch_norm);
    }
  }
}

TEST_CASE("train: a checkpoint torn between its two files still resumes bit for bit", "[train][reliability]") {
  // A process killed after trainer.safetensors is renamed into place and before model.safetensors
  // is leaves model.safetensors one checkpoint behind. The resume state is the trainer file alone.
  TempDir d;
  Mnist data = tiny_data(d.path(), 250);
  TrainConfig c = tiny_config(true);
  c.steps = 12;
  auto straight = make_model(c.model);
  train(*straight, data, c);

  TrainConfig first = c;
  first.steps = 6;
  first.checkpoint_dir = d.path() + "/ckpt";
  first.checkpoint_every = 3;
  // Keep step 3's model file, then put it back over step 6's: the torn state.
  std::filesystem::path step3 = d.path() + "/model_step3.safetensors";
  TrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t, double, double, double) {
    if (step == 4) std::filesystem::copy_file(first.checkpoint_dir + "/model.safetensors", step3);
  };
  auto part = make_model(c.model);
  train(*part, data, first, cb);
  REQUIRE(load_safetensors(first.checkpoint_dir + "/model.safetensors").metadata.at("step") == "6");
  REQUIRE(load_safetensors(step3.string()).metadata.at("step") == "3");
  std::filesystem::copy_file(step3, first.checkpoint_dir + "/model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  TrainConfig rest = c;
  rest.checkpoint_dir = first.checkpoint_dir;
  rest.resume = true;
  auto resumed = make_model(c.model);
  REQUIRE(train(*resumed, data, rest).steps == 12);
  REQUIRE(weights(*resumed) == weights(*straight));
}

TEST_CASE("train: a diverging run stops, says where, and keeps the last good checkpoint", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path());
  TrainConfig c = tiny_config(false);
  c.model.activation = Activation::ReLU;
  c.lr = 1e6f;
  c.steps = 50;
  c.checkpoint_dir = d.path() + "/ckpt";
  c.checkpoint_every = 1;
  auto net = make_model(c.model);
  TrainResult r = train(*net, data, c);
  REQUIRE(r.diverged);
  REQUIRE(r.diverged_step >= 1);
  REQUIRE(r.diverged_step <= 50);
  REQUIRE(r.diverged_reason.find("step " + std::to_string(r.diverged_step)) != std::string::npos);
  if (r.diverged_step > 1) {
    // the checkpoint on disk is from before the divergence and loads (finite weights)
    auto good = load_model(c.checkpoint_dir + "/model.safetensors");
    REQUIRE(good != nullptr);
  }
}

TEST_CASE("train: bad configurations name the flag", "[train][reliability]") {
  TempDir d;
  Mnist data = tiny_data(d.path(), 40, 8);
  TrainConfig c = tiny_config(false);
  auto net = make_model(c.model);
  auto fails_with = [&](TrainConfig bad, const std::string& msg) {
    INFO(msg);
    REQUIRE_THROWS_WITH(train(*net, data, bad), Catch::Contains(msg));
  };
  TrainConfig x = c;
  x.lr = -1;
  fails_with(x, "--lr must be a positive number");
  x = c;
  x.batch_size = 0;
  fails_with(x, "--batch-size must be at least 1");
  x = c;
  x.batch_size = 41;
  fails_with(x, "--batch-size 41 is larger than the training set (40 images)");
  x = c;
  x.epochs = 1;
  x.steps = 3;
  fails_with(x, "--epochs and --steps cannot both be given");
  x = c;
  x.momentum = 1.5f;
  fails_with(x, "--momentum must be in [0, 1)");
  REQUIRE_THROWS_WITH(set_threads(100000), Catch::Contains("--threads must be between 1 and 1024"));
}

TEST_CASE("train: a schedule sets each step's lr, clipping bounds the update", "[train][optim]") {
  TempDir d;
  Mnist data = tiny_data(d.path(), 128, 32);
  TrainConfig c = tiny_config(false);
  c.model = {ModelKind::Mlp, false, Activation::Sigmoid, BatchNormImpl::Fused, 3, {}};
  c.steps = 12;
  c.eval_every = 1;
  c.schedule = parse_lr_schedule("onecycle:0.3");
  auto net = make_model(c.model);
  TrainResult r = train(*net, data, c);
  REQUIRE(r.curve.size() == 12);
  for (const CurvePoint& p : r.curve) {  // the point after step s shows the lr step s-1 used
    INFO(p.step);
    REQUIRE(p.lr == static_cast<float>(c.schedule.lr_at(p.step - 1, c.lr, 12)));
  }
  REQUIRE(r.curve[3].lr > r.curve[0].lr);  // warming up
  REQUIRE(r.curve[11].lr < r.curve[4].lr);  // annealing
  // One step with and without clipping: the clipped update is the unclipped one scaled down.
  auto one_step = [&](double clip) {
    TrainConfig k = tiny_config(false);
    k.model = c.model;
    k.momentum = 0.0f;
    k.steps = 1;
    k.eval_every = 0;
    k.clip_grad_norm = clip;
    auto n = make_model(k.model);
    const auto before = weights(*n);
    train(*n, data, k);
    const auto after = weights(*n);
    double sq = 0;
    for (size_t i = 0; i < before.size(); ++i)
      for (size_t j = 0; j < before[i].size(); ++j) sq += std::pow(static_cast<double>(after[i][j] - before[i][j]), 2);
    return std::sqrt(sq);  // = lr * ||g|| (clipped)
  };
  const double free_step = one_step(0), clipped = one_step(0.01);
  REQUIRE(free_step > 0.05 * 0.02);  // the gradient's norm is above the bound here
  REQUIRE(clipped == Approx(0.05 * 0.01).epsilon(1e-3));
}
