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
  bool json = false;
};
}  // namespace

Command add_predict_command(CLI::App& root) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = root.add_subcommand("predict", "Classify images of handwritten digits (PNG, JPEG, BMP, ...)");
  cmd->add_option("--checkpoint", a->checkpoint, "safetensors checkpoint")->required();
  cmd->add_option("images", a->images, "Image files")->required();
  add_model_flags(cmd, a->model);
  cmd->add_option("--max-pixels", a->max_pixels,
                  "Refuse images declaring more pixels than this, before decoding (peak memory is about 24 bytes "
                  "per pixel allowed)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 31))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON (an object per image; an array for several)");
  return {cmd, [a]() -> int {
            auto net = load_checkpoint_model(a->checkpoint, a->model);
            net->eval();
            NoGradGuard no_grad;
            nlohmann::json all = nlohmann::json::array();
            for (const std::string& path : a->images) {
              Tensor x = mnist_preprocess(load_image(path, a->max_pixels), path);
              Tensor logp = log_softmax(net->forward(x));
              std::vector<std::pair<float, int>> ranked;
              for (int k = 0; k < Net::kClasses; ++k) ranked.push_back({std::exp(logp.data()[k]), k});
              std::sort(ranked.begin(), ranked.end(), [](auto& l, auto& r) { return l.first > r.first; });
              nlohmann::json top = nlohmann::json::array();
              for (int i = 0; i < 3; ++i) top.push_back({{"class", ranked[static_cast<size_t>(i)].second}, {"prob", ranked[static_cast<size_t>(i)].first}});
              all.push_back({{"file", path}, {"top", top}});
              if (!a->json) {
                std::printf("%s: %d (%.1f%%)", path.c_str(), ranked[0].second, 100 * ranked[0].first);
                for (int i = 1; i < 3; ++i) std::printf(", %d (%.1f%%)", ranked[static_cast<size_t>(i)].second, 100 * ranked[static_cast<size_t>(i)].first);
                std::printf("\n");
              }
            }
            if (a->json) std::cout << (all.size() == 1 ? all[0] : all).dump() << "\n";
            return kExitOk;
          }};
}

}  // namespace minidl::app
