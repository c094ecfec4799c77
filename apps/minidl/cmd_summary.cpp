// minidl summary: each layer of a model with its output shape, parameters and multiply-adds per
// example, the totals, and which layers run fused (as torchsummary prints a PyTorch model).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

#include "cli.h"
#include "minidl/autograd.h"
#include "minidl/checkpoint.h"
#include "minidl/kernels/conv2d.h"
#include "minidl/kernels/dispatch.h"

namespace minidl::app {

namespace {
struct SummaryArgs {
  std::string checkpoint, input_shape;
  ModelFlags model;
  int64_t classes = 0;
  bool json = false;
};

int64_t parameter_count(const Module& m) {
  int64_t n = 0;
  for (const auto& p : m.named_parameters()) n += p.tensor.numel();
  return n;
}

// The kernel paths a convolution of this input takes in the active variant (kernels/conv2d.h);
// null for other layers and grouped convolutions, which have one path.
std::optional<kernels::Conv2dPaths> conv_paths(const Module& m, const Shape& in) {
  const auto* conv = dynamic_cast<const Conv2d*>(&m);
  if (!conv || conv->groups() != 1 || in.size() != 4) return std::nullopt;
  const Tensor& w = conv->weight;
  return kernels::conv2d_paths({in[0], in[1], in[2], in[3], w.size(0), w.size(2), w.size(3), conv->stride(), conv->padding()});
}

}  // namespace

Command add_summary_command(CLI::App& root) {
  auto a = std::make_shared<SummaryArgs>();
  CLI::App* cmd = root.add_subcommand("summary", "Each layer's output shape, parameters and multiply-adds, and the totals");
  cmd->add_option("--checkpoint", a->checkpoint, "Summarize the model a checkpoint describes");
  add_model_flags(cmd, a->model);
  cmd->add_option("--input-shape", a->input_shape, "C,H,W of one example (default: the checkpoint's, else 1,28,28)");
  cmd->add_option("--classes", a->classes, "Classes (default: the checkpoint's, else 10)")->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  cmd->add_flag("--json", a->json, "Print one JSON object");
  return {cmd, [a]() -> int {
            ModelConfig config = a->checkpoint.empty() ? a->model.config() : load_checkpoint_model(a->checkpoint, a->model)->config();
            if (!a->input_shape.empty()) {
              const std::vector<int64_t> shape = parse_input_shape(a->input_shape);
              config.input_shape = shape;
              config.input_mean.assign(static_cast<size_t>(shape[0]), 0.0f);
              config.input_std.assign(static_cast<size_t>(shape[0]), 1.0f);
            }
            if (a->classes) config.classes = a->classes;
            // One build: a preset is a SpecNet too, under the reference CNN's layer names.
            auto net = make_model(config);
            net->eval();
            NoGradGuard no_grad;
            Tensor h = Tensor::zeros({1, config.input_shape[0], config.input_shape[1], config.input_shape[2]});
            nlohmann::json layers = nlohmann::json::array();
            int64_t total_params = 0;
            double total_macs = 0;
            const auto* spec_net = dynamic_cast<const SpecNet*>(net.get());
            MINIDL_CHECK(spec_net, "summary: the model was not built from a spec");
            const std::vector<SpecToken>& tokens = spec_net->parsed().tokens();
            std::vector<std::string> kernel_lines;
            int width = 22;
            for (const auto& t : tokens) width = std::max(width, static_cast<int>(t.text.size()));
            int name_width = 4;  // "0", "1", ... for a spec; the reference CNN's names for a preset
            for (const auto& child : net->children()) name_width = std::max(name_width, static_cast<int>(child.first.size()));
            if (!a->json)
              std::printf("%-*s %-*s %-18s %12s %14s\n", name_width, "#", width, "layer", "output", "parameters",
                          "MACs/example");
            for (size_t i = 0; i < net->children().size(); ++i) {
              const auto& [name, module] = net->children()[i];
              const Shape in = h.shape();
              h = module->forward(h);
              const int64_t params = parameter_count(*module);
              const double macs = spec_net->layer_macs().at(i);
              Shape out(h.shape().begin() + 1, h.shape().end());
              total_params += params;
              total_macs += macs;
              layers.push_back({{"index", i}, {"name", name}, {"token", tokens[i].text}, {"module", module->describe()},
                                {"output", out}, {"parameters", params}, {"macs", macs}});
              if (const auto paths = conv_paths(*module, in)) {
                layers.back()["kernels"] = {{"forward", paths->forward}, {"pool_forward", paths->pool_forward},
                                            {"dx", paths->dx}, {"dweight", paths->dweight}};
                kernel_lines.push_back(detail::concat("  ", name, ": forward ", paths->forward, "; with pooling (inference) ",
                                                      paths->pool_forward, "; dx ", paths->dx, "; dweight ", paths->dweight));
              }
              if (!a->json)
                std::printf("%-*s %-*s %-18s %12lld %14.0f\n", name_width, name.c_str(), width, tokens[i].text.c_str(),
                            shape_to_string(out).c_str(), static_cast<long long>(params), macs);
            }
            const std::string fused = net->fusion_note();
            if (a->json) {
              nlohmann::json j{{"model", describe_model(config)}, {"spec", spec_net->parsed().text()}, {"input_shape", config.input_shape},
                               {"classes", config.classes}, {"layers", layers}, {"total_parameters", total_params},
                               {"total_macs", total_macs}, {"fused", fused},
                               {"isa", kernels::isa_name(kernels::active_isa())}};
              std::cout << j.dump() << "\n";
              return kExitOk;
            }
            std::printf("\ninput %s, %lld classes; %s\n", shape_to_string(config.input_shape).c_str(),
                        static_cast<long long>(config.classes),
                        config.kind == ModelKind::Spec ? "a spec" : ("the " + describe_model(config) + " preset, as the spec above").c_str());
            std::printf("total parameters %lld, multiply-adds per example %.0f (%.2f MFLOP forward)\n",
                        static_cast<long long>(total_params), total_macs, 2 * total_macs / 1e6);
            std::printf("fused: %s\n", fused.c_str());
            if (!kernel_lines.empty()) {
              std::printf("convolution kernels (%s variant):\n", kernels::isa_name(kernels::active_isa()));
              for (const std::string& line : kernel_lines) std::printf("%s\n", line.c_str());
            }
            return kExitOk;
          }};
}

}  // namespace minidl::app
