// minidl predict: classify your own images of digits.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "minidl/autograd.h"
#include "minidl/checkpoint.h"
#include "minidl/data/image.h"
#include "minidl/ops.h"

namespace minidl::app {


namespace {
struct PredictArgs {
  std::string checkpoint;
  ModelFlags model;
  std::vector<std::string> images;
  int64_t max_pixels = kMaxImagePixels;
  std::string preprocess = "auto";
  bool json = false;
};
}  // namespace

Command add_predict_command(CLI::App& root) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = root.add_subcommand("predict", "Classify images (PNG, JPEG, BMP, ...) with a checkpoint");
  cmd->add_option("--checkpoint", a->checkpoint, "safetensors checkpoint")->required();
  cmd->add_option("images", a->images, "Image files")->required();
  add_model_flags(cmd, a->model);
  cmd->add_option("--max-pixels", a->max_pixels,
                  "Refuse images declaring more pixels than this, before decoding (peak memory is about 24 bytes "
                  "per pixel allowed)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 31))
      ->capture_default_str();
  cmd->add_option("--preprocess", a->preprocess,
                  "digit: MNIST's preparation (grey, inverted on a light background, cropped, fitted in 20x20, "
                  "centred by mass in 28x28); resize: converted to the model's channels and resized to its input; "
                  "auto: digit for a 1x28x28 model, resize otherwise")
      ->check(CLI::IsMember({"auto", "digit", "resize"}))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON (an object per image; an array for several)");
  return {cmd, [a]() -> int {
            auto net = load_checkpoint_model(a->checkpoint, a->model);
            net->eval();
            NoGradGuard no_grad;
            const ModelConfig& mc = net->config();
            const bool mnist_shaped = mc.input_shape == std::vector<int64_t>{1, 28, 28};
            const bool digit = a->preprocess == "digit" || (a->preprocess == "auto" && mnist_shaped);
            MINIDL_CHECK(!digit || mnist_shaped, "--preprocess digit: the model takes ", shape_to_string(mc.input_shape),
                         " images, the digit preparation makes 1x28x28; use --preprocess resize");
            const int64_t K = net->classes(), shown = std::min<int64_t>(3, K);
            auto name_of = [&](int k) { return mc.class_names.empty() ? std::to_string(k) : mc.class_names[static_cast<size_t>(k)]; };
            nlohmann::json all = nlohmann::json::array();
            for (const std::string& path : a->images) {
              Tensor x;
              if (digit) {
                x = mnist_preprocess(load_image(path, a->max_pixels), path);
                // mnist_preprocess normalises with MNIST's constants; a model trained with others gets its own.
                if (mc.input_mean != std::vector<float>{kMnistMean} || mc.input_std != std::vector<float>{kMnistStd})
                  for (int64_t i = 0; i < x.numel(); ++i)
                    x.data()[i] = ((x.data()[i] * kMnistStd + kMnistMean) - mc.input_mean[0]) / mc.input_std[0];
              } else {
                x = image_to_input(load_image_channels(path, static_cast<int>(mc.input_shape[0]), a->max_pixels),
                                   mc.input_shape, mc.input_mean, mc.input_std);
              }
              Tensor logp = log_softmax(net->forward(x));
              std::vector<std::pair<float, int>> ranked;
              for (int k = 0; k < K; ++k) ranked.push_back({std::exp(logp.data()[k]), k});
              std::sort(ranked.begin(), ranked.end(), [](auto& l, auto& r) { return l.first > r.first; });
              nlohmann::json top = nlohmann::json::array();
              for (int64_t i = 0; i < shown; ++i) {
                const auto& [p, k] = ranked[static_cast<size_t>(i)];
                nlohmann::json entry{{"class", k}, {"prob", p}};
                if (!mc.class_names.empty()) entry["name"] = name_of(k);
                top.push_back(entry);
              }
              all.push_back({{"file", path}, {"top", top}});
              if (!a->json) {
                std::printf("%s:", path.c_str());
                for (int64_t i = 0; i < shown; ++i)
                  std::printf("%s %s (%.1f%%)", i ? "," : "", name_of(ranked[static_cast<size_t>(i)].second).c_str(),
                              100 * ranked[static_cast<size_t>(i)].first);
                std::printf("\n");
              }
            }
            if (a->json) std::cout << (all.size() == 1 ? all[0] : all).dump() << "\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
