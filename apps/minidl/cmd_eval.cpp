// minidl eval: loss, accuracy, per-class accuracy and confusion matrix of a checkpoint.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "minidl/autograd.h"
#include "minidl/checkpoint.h"
#include "minidl/io/file.h"

namespace minidl::app {

namespace {
// The model's logits on every example of `test`, in file order, in eval mode.
void write_logits(const std::string& path, Net& net, const Dataset& test, int64_t batch_size) {
  net.eval();
  NoGradGuard no_grad;
  std::vector<int64_t> order(static_cast<size_t>(test.count));
  for (int64_t i = 0; i < test.count; ++i) order[static_cast<size_t>(i)] = i;
  std::string out = "index,label";
  for (int64_t k = 0; k < net.classes(); ++k) out += ",logit_" + std::to_string(k);
  out += "\n";
  Tensor images;
  std::vector<int32_t> labels;
  char cell[32];
  for (int64_t begin = 0; begin < test.count; begin += batch_size) {
    const int64_t end = std::min(test.count, begin + batch_size);
    make_batch(test, order, begin, end, images, labels);
    Tensor logits = net.forward(images);
    for (int64_t b = 0; b < end - begin; ++b) {
      out += std::to_string(begin + b) + "," + std::to_string(labels[static_cast<size_t>(b)]);
      for (int64_t k = 0; k < net.classes(); ++k) {
        std::snprintf(cell, sizeof cell, ",%.9g", static_cast<double>(logits.data()[b * net.classes() + k]));
        out += cell;
      }
      out += "\n";
    }
  }
  write_file_atomic(path, out);
}

struct EvalArgs {
  std::string checkpoint, logits;
  DataFlags data;
  ModelFlags model;
  int64_t test_limit = 0, batch_size = 500;
  int threads = 0;
  bool json = false;
};
}  // namespace

Command add_eval_command(CLI::App& root) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = root.add_subcommand("eval", "Evaluate a checkpoint on the test set");
  cmd->add_option("--checkpoint", a->checkpoint, "safetensors checkpoint")->required();
  add_data_flags(cmd, a->data);
  cmd->add_option("--test-limit", a->test_limit, "Use only the first N test images")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", a->batch_size, "Evaluation batch size")->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  add_model_flags(cmd, a->model);
  cmd->add_flag("--json", a->json, "Print one JSON object");
  cmd->add_option("--logits", a->logits,
                  "Also write each test example's logits here (CSV: index,label,logit_0,...; 9 significant digits)");
  return {cmd, [a]() -> int {
            if (a->threads) set_threads(a->threads);
            auto net = load_checkpoint_model(a->checkpoint, a->model);
            DataOptions options = a->data.options(0, a->test_limit);
            options.load_train = false;
            Dataset test = load_dataset(a->data.dir, options).test;
            normalize_like(net->config(), test, a->data.dir);
            EvalResult r = evaluate(*net, test, a->batch_size);
            if (!a->logits.empty()) write_logits(a->logits, *net, test, a->batch_size);
            if (a->json) {
              nlohmann::json j{{"accuracy", r.accuracy}, {"loss", r.loss}, {"n", r.n},
                               {"per_class_accuracy", r.per_class_accuracy}, {"confusion", r.confusion}};
              std::cout << j.dump() << "\n";
              return kExitOk;
            }
            std::printf("model     %s\n", net->describe().c_str());
            std::printf("images    %lld\naccuracy  %.2f%%\nloss      %.4f\n\nper class:\n", static_cast<long long>(r.n),
                        100 * r.accuracy, r.loss);
            for (size_t k = 0; k < r.per_class_accuracy.size(); ++k)
              std::printf("  %zu: %6.2f%%\n", k, 100 * r.per_class_accuracy[k]);
            std::printf("\nconfusion (rows: true class, columns: predicted)\n     ");
            for (size_t k = 0; k < r.confusion.size(); ++k) std::printf("%6zu", k);
            std::printf("\n");
            for (size_t t = 0; t < r.confusion.size(); ++t) {
              std::printf("  %zu: ", t);
              for (int64_t v : r.confusion[t]) std::printf("%6lld", static_cast<long long>(v));
              std::printf("\n");
            }
            return kExitOk;
          }};
}

}  // namespace minidl::app
