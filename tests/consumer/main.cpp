// A model of one's own on minidl's public API: a small MLP, trained for a few steps on synthetic
// data, saved as safetensors; plus a layer of one's own registered for --arch specs.
#include <minidl/io/safetensors.h>
#include <minidl/nn/layers.h>
#include <minidl/nn/registry.h>
#include <minidl/nn/spec.h>
#include <minidl/ops.h>
#include <minidl/optim.h>

#include <cstdio>

using namespace minidl;

// Our model: x -> Linear(784, 32) -> tanh -> Linear(32, 10)
class TinyMlp : public Module {
 public:
  explicit TinyMlp(Generator& gen) {
    fc1 = register_module("fc1", std::make_shared<Linear>(784, 32, true, gen));
    fc2 = register_module("fc2", std::make_shared<Linear>(32, 10, true, gen));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(tanh(fc1->forward(flatten(x)))); }
  std::string describe() const override { return "TinyMlp"; }
  std::shared_ptr<Linear> fc1, fc2;
};

// Our layer, usable in a spec as "square": y = x * x.
class Square : public Module {
 public:
  Tensor forward(const Tensor& x) override { return square(x); }
  std::string describe() const override { return "Square()"; }
};
MINIDL_REGISTER_LAYER(square, {"square", "square", {},
    [](const LayerArgs&, const LayerContext& ctx) { return BuiltLayer{std::make_shared<Square>(), ctx.input}; }});

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "tiny.safetensors";
  Generator gen(0);
  TinyMlp net(gen);
  SGD opt(net.parameters(), {0.1f, 0.9f});
  // Synthetic data: class k lights up row 2k of the image.
  Tensor x = Tensor::zeros({20, 1, 28, 28});
  std::vector<int32_t> labels;
  for (int i = 0; i < 20; ++i) {
    labels.push_back(i % 10);
    for (int c = 0; c < 28; ++c) x.data()[i * 784 + 2 * (i % 10) * 28 + c] = 1.0f;
  }
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    net.zero_grad();
    Tensor loss = cross_entropy(net.forward(x), labels);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  save_safetensors(out, net.state_dict(), {{"model", "tiny-mlp"}});
  ModelConfig spec;
  spec.kind = ModelKind::Spec;
  spec.arch = "flatten linear(16) square linear(10)";
  auto from_spec = make_model(spec);
  std::printf("loss %.4f -> %.4f; saved %s; spec model: %s\n", first, last, out.c_str(), from_spec->describe().c_str());
  return last < 0.5f * first ? 0 : 1;
}
