// minidl study NAME: the BN literature's claims about *why* BN works, each measured over seeds.
//   detached   BN paper section 2: normalizing outside the gradient lets a pre-BN bias drift
//   noisy      Santurkar et al. 2018 section 2.1: BN with injected covariate shift
//   ics        Santurkar et al. 2018 Definition 2.1: internal covariate shift, per layer
//   landscape  Santurkar et al. 2018 section 3.2: loss and gradient along the gradient direction
//   init       sensitivity to the scale of the initial weights
//   depth      BN paper section 3.3: saturating nonlinearities trainable with BN as depth grows
//   skipinit   De & Smith 2020: residual nets with BN, without normalization, and with SkipInit
//   init-gradient  Yang et al. 2019: gradient explosion at initialization in deep BN networks
//   weight-decay   BN's scale invariance: weight norm, effective lr, w.g = 0, g(2w) = g(w)/2
// Each writes DIR/study.json (every run, a summary), DIR/study.csv and DIR/study.png.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <algorithm>
#include <array>
#include <sstream>

#include "cli.h"
#include "experiment.h"
#include "minidl/autograd.h"
#include "minidl/nn/residual.h"
#include "minidl/ops.h"
#include "minidl/train/probes.h"

namespace minidl::app {

namespace {

struct StudyArgs {
  TrainFlags flags;
  std::string seeds = "3";
  std::string out;
  bool quiet = false;
  int64_t every = 0;
  std::vector<float> lrs;
  std::vector<float> scales{0.1f, 0.3f, 1.0f, 3.0f, 10.0f};
  std::vector<int64_t> depths{8, 16, 32};
  int64_t width = 100;
  float decay = 5e-3f;
  std::string net = "mlp";
  std::string layer = "conv2.weight";
};

struct Arm {
  std::string name;
  ModelConfig model;
};

double l2(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += double(t.data()[i]) * t.data()[i];
  return std::sqrt(s);
}

// Per-unit mean and variance of an activation input ([N, C] or [N, C, H, W]; positions count as
// samples), for the distribution-movement measure of study noisy.
void unit_moments(const Tensor& h, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t N = h.size(0), C = h.size(1), S = h.dim() == 4 ? h.size(2) * h.size(3) : 1;
  mean.assign(static_cast<size_t>(C), 0.0);
  var.assign(static_cast<size_t>(C), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < S; ++p) {
        const double v = h.data()[(n * C + c) * S + p];
        s += v, s2 += v * v;
      }
    const double m = s / static_cast<double>(N * S);
    mean[static_cast<size_t>(c)] = m;
    var[static_cast<size_t>(c)] = s2 / static_cast<double>(N * S) - m * m;
  }
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(8);
  os << v;
  return os.str();
}

class Study {
 public:
  Study(std::string name, std::shared_ptr<StudyArgs> args) : name_(std::move(name)), a_(std::move(args)) {}

  // Runs every arm for every seed (and every lr when lrs is given), with per-run hooks.
  int run(const std::vector<Arm>& arms, const std::string& csv_header,
          const std::function<void(const Arm&, uint64_t, float, TrainConfig&, TrainCallbacks&, std::ostream& csv,
                                   nlohmann::json& extra)>& hook,
          const std::function<void(nlohmann::json&)>& finish = {}) {
    const std::vector<uint64_t> seeds = parse_seeds(a_->seeds);
    MINIDL_CHECK(!is_init_checkpoint(a_->flags.init), "--init: study takes uniform or normal:STD, got '", a_->flags.init, "'");
    TrainConfig base = to_config(a_->flags);
    Mnist data = load_data(a_->flags);
    const std::string out = a_->out.empty() ? "out/study-" + name_ : a_->out;
    make_dir(out);
    install_signal_handlers();
    std::ostringstream csv;
    csv << csv_header << "\n";
    nlohmann::json runs = nlohmann::json::array(), arm_list = nlohmann::json::array();
    for (const Arm& arm : arms) arm_list.push_back({{"name", arm.name}, {"model", describe_model(arm.model)}});
    const std::vector<float> lrs = a_->lrs.empty() ? std::vector<float>{base.lr} : a_->lrs;
    for (float lr : lrs)
      for (uint64_t seed : seeds)
        for (const Arm& arm : arms) {
          TrainConfig c = base;
          c.lr = lr;
          c.seed = seed;
          c.model = arm.model;
          c.model.seed = seed;
          c.model.init_std = arm.model.init_std ? arm.model.init_std : base.model.init_std;
          if (arm.model.init_scale == 1.0f) c.model.init_scale = base.model.init_scale;
          validate(c);
          const std::string label = arm.name + " lr=" + fmt(lr) + " seed " + std::to_string(seed);
          if (!a_->quiet) std::cerr << "minidl study " << name_ << ": " << label << ": " << describe(c) << "\n";
          TrainCallbacks cb = progress_callbacks(label, true);
          nlohmann::json extra = nlohmann::json::object();
          std::ostringstream rows;
          hook(arm, seed, lr, c, cb, rows, extra);
          fit_to_data(c.model, data);
          auto net = make_model(c.model);
          TrainResult r = train(*net, data, c, cb);
          if (r.interrupted) {
            std::cerr << "minidl: interrupted; the study is incomplete\n";
            return kExitInterrupted;
          }
          csv << rows.str();
          nlohmann::json rec = run_record(arm.name, lr, seed, r);
          for (auto it = extra.begin(); it != extra.end(); ++it) rec[it.key()] = it.value();
          runs.push_back(rec);
          if (!a_->quiet)
            std::cerr << "[" << label << "] "
                      << (r.diverged ? "diverged at step " + std::to_string(r.diverged_step)
                                     : "test accuracy " + fmt(100 * r.final_eval.accuracy) + "%")
                      << "\n";
        }
    nlohmann::json j{{"study", name_}, {"config", config_json(base)}, {"seeds", seeds}, {"arms", arm_list},
                     {"runs", runs},   {"summary", summarize(runs)}};
    if (finish) finish(j);
    write_text(out + "/study.csv", csv.str());
    write_text(out + "/study.json", j.dump(2) + "\n");
    print_summary(j["summary"], lrs.size() > 1);
    if (j.contains("findings"))
      for (const auto& f : j["findings"]) std::printf("%s\n", f.get<std::string>().c_str());
    run_plot("study-" + name_, out);
    std::cout << "results: " << out << "/study.csv, study.json, study.png\n";
    return kExitOk;
  }

  ModelConfig base_model(const char* command) const { return a_->flags.model.config_for_arms(command); }

 private:
  std::string name_;
  std::shared_ptr<StudyArgs> a_;
};

// Runs fn at every evaluation point, before what cb already does there (the progress line).
void on_eval_also(TrainCallbacks& cb, std::function<void(const CurvePoint&)> fn) {
  auto previous = cb.on_eval;
  cb.on_eval = [fn = std::move(fn), previous](const CurvePoint& p, Net& n) {
    fn(p);
    if (previous) previous(p, n);
  };
}

CLI::App* add_study(CLI::App* parent, const std::string& name, const std::string& help, std::shared_ptr<StudyArgs> a) {
  CLI::App* cmd = parent->add_subcommand(name, help);
  add_train_flags(cmd, a->flags);
  cmd->add_option("--seeds", a->seeds, "Seeds: a count (3 means 0,1,2) or a list (0,4,7); each a full run per arm")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Output directory (default out/study-" + name + ")");
  cmd->add_flag("--quiet", a->quiet, "No progress output");
  return cmd;
}

}  // namespace

Command add_study_command(CLI::App& root) {
  CLI::App* study = root.add_subcommand("study", "Measure the BN literature's claims about why BN works (each over seeds)");
  study->require_subcommand(1);
  std::vector<std::pair<CLI::App*, std::function<int()>>> subs;

  {  // detached
    auto a = std::make_shared<StudyArgs>();
    a->flags.model.model = "mlp";
    a->flags.eval_every = "100";
    CLI::App* cmd = add_study(study, "detached",
                              "BN paper section 2: BN with its statistics outside the gradient, a bias before each BN; "
                              "the pre-BN biases' norms per step",
                              a);
    subs.push_back({cmd, [a]() -> int {
                      Study s("detached", a);
                      ModelConfig m = s.base_model("study detached");
                      m.batch_norm = true;
                      m.bias_before_bn = true;
                      if (m.kind == ModelKind::Spec) throw Error("study detached runs the presets (--model mlp or cnn)");
                      Arm bn{"bn", m}, det{"detached", m};
                      det.model.batch_norm_impl = BatchNormImpl::Detached;
                      const char* biases[] = {"fc1.bias", "fc2.bias", "fc3.bias"};
                      const char* cnn_biases[] = {"conv1.bias", "conv2.bias", "fc1.bias"};
                      const bool cnn = m.kind == ModelKind::Cnn;
                      return s.run(
                          {bn, det}, "arm,seed,step,loss,bias1_norm,bias2_norm,bias3_norm",
                          [&](const Arm& arm, uint64_t seed, float, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                              nlohmann::json& extra) {
                            auto first = std::make_shared<std::vector<double>>();
                            auto last = std::make_shared<std::vector<double>>();
                            cb.after_backward = [&csv, &arm, seed, first, last, cnn, biases, cnn_biases](
                                                    int64_t step, Net& net, Optimizer&, const Tensor&,
                                                    const std::vector<int32_t>&, float loss) {
                              std::vector<double> norms;
                              for (const auto& p : net.named_parameters())
                                for (int k = 0; k < 3; ++k)
                                  if (p.name == (cnn ? cnn_biases[k] : biases[k])) norms.push_back(l2(p.tensor));
                              if (first->empty()) *first = norms;
                              *last = norms;
                              csv << arm.name << "," << seed << "," << step << "," << fmt(loss);
                              for (double v : norms) csv << "," << fmt(v);
                              csv << "\n";
                            };
                            extra["bias_norm_first"] = nlohmann::json::array();
                            extra["bias_norm_last"] = nlohmann::json::array();
                            on_eval_also(cb, [&extra, first, last](const CurvePoint&) {
                              extra["bias_norm_first"] = *first;
                              extra["bias_norm_last"] = *last;
                            });
                          },
                          [](nlohmann::json& j) {
                            nlohmann::json findings = nlohmann::json::array();
                            for (const char* arm : {"bn", "detached"}) {
                              std::vector<double> growth;
                              for (const auto& r : j["runs"])
                                if (r["arm"] == arm && r["bias_norm_first"].size() == 3)
                                  for (size_t k = 0; k < 3; ++k)
                                    growth.push_back(r["bias_norm_last"][k].get<double>() /
                                                     std::max(1e-12, r["bias_norm_first"][k].get<double>()));
                              const double med = median(growth);
                              j["bias_growth"][arm] = {{"median", med}, {"values", growth}};
                              findings.push_back(std::string(arm) + ": pre-BN bias norm, last / first step, median over layers and seeds: " + fmt(med));
                            }
                            j["findings"] = findings;
                          });
                    }});
  }

  {  // noisy
    auto a = std::make_shared<StudyArgs>();
    CLI::App* cmd = add_study(study, "noisy",
                              "Santurkar et al. section 2.1: no BN, BN, BN with injected covariate noise, and the noise "
                              "without BN; accuracy and how far each layer's activation distribution moves per step",
                              a);
    subs.push_back({cmd, [a]() -> int {
                      Study s("noisy", a);
                      ModelConfig m = s.base_model("study noisy");
                      if (m.kind == ModelKind::Spec) throw Error("study noisy runs the presets (--model cnn or mlp)");
                      Arm no_bn{"no_bn", arm_config(m, false)}, bn{"bn", arm_config(m, true)};
                      Arm noisy_bn{"noisy_bn", arm_config(m, true)}, noisy_no_bn{"noisy_no_bn", arm_config(m, false)};
                      noisy_bn.model.covariate_noise = noisy_no_bn.model.covariate_noise = true;
                      return s.run(
                          {no_bn, bn, noisy_bn, noisy_no_bn}, "arm,seed,step,layer,mean_shift,var_shift",
                          [&](const Arm& arm, uint64_t seed, float, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                              nlohmann::json& extra) {
                            struct State {
                              std::vector<std::vector<double>> mean, var;
                              std::vector<std::vector<double>> dmean, dvar;  // per layer, per step
                            };
                            auto st = std::make_shared<State>();
                            cb.after_backward = [&csv, &arm, seed, st](int64_t step, Net& net, Optimizer&, const Tensor&,
                                                                      const std::vector<int32_t>&, float) {
                              net.record_hidden(true);  // from the next forward on
                              const auto& hs = net.hidden_inputs();
                              if (st->dmean.size() < hs.size()) st->dmean.resize(hs.size()), st->dvar.resize(hs.size());
                              for (size_t l = 0; l < hs.size(); ++l) {
                                std::vector<double> mu, var;
                                unit_moments(hs[l], mu, var);
                                if (st->mean.size() > l && st->mean[l].size() == mu.size()) {
                                  double dm = 0, dv = 0;
                                  for (size_t u = 0; u < mu.size(); ++u)
                                    dm += std::abs(mu[u] - st->mean[l][u]), dv += std::abs(var[u] - st->var[l][u]);
                                  dm /= static_cast<double>(mu.size()), dv /= static_cast<double>(mu.size());
                                  st->dmean[l].push_back(dm);
                                  st->dvar[l].push_back(dv);
                                  if (step % 10 == 0)
                                    csv << arm.name << "," << seed << "," << step << "," << l + 1 << "," << fmt(dm) << ","
                                        << fmt(dv) << "\n";
                                }
                                if (st->mean.size() <= l) st->mean.resize(l + 1), st->var.resize(l + 1);
                                st->mean[l] = mu;
                                st->var[l] = var;
                              }
                            };
                            on_eval_also(cb, [&extra, st](const CurvePoint&) {
                              nlohmann::json ms = nlohmann::json::array(), vs = nlohmann::json::array();
                              for (size_t l = 0; l < st->dmean.size(); ++l) {
                                ms.push_back(median(st->dmean[l]));
                                vs.push_back(median(st->dvar[l]));
                              }
                              extra["median_mean_shift"] = ms;
                              extra["median_var_shift"] = vs;
                            });
                          });
                    }});
  }

  {  // ics
    auto a = std::make_shared<StudyArgs>();
    a->every = 50;
    CLI::App* cmd = add_study(study, "ics",
                              "Santurkar et al. Definition 2.1: per layer, the gradient before and after the earlier "
                              "layers' update, ||G - G'|| / ||G|| and cos(G, G'), with and without BN",
                              a);
    cmd->add_option("--every", a->every, "Measure every N steps")->check(CLI::Range(int64_t{1}, int64_t{1} << 30))->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("ics", a);
                      ModelConfig m = s.base_model("study ics");
                      return s.run(
                          {{"no_bn", arm_config(m, false)}, {"bn", arm_config(m, true)}},
                          "arm,seed,step,layer,name,relative_l2,cosine",
                          [&](const Arm& arm, uint64_t seed, float, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                              nlohmann::json& extra) {
                            auto rel = std::make_shared<std::map<size_t, std::vector<double>>>();
                            auto cosv = std::make_shared<std::map<size_t, std::vector<double>>>();
                            const int64_t every = a->every;
                            cb.after_backward = [&csv, &arm, seed, rel, cosv, every](
                                                    int64_t step, Net& net, Optimizer& opt, const Tensor& x,
                                                    const std::vector<int32_t>& y, float) {
                              if (step % every != 0 && step != 1) return;
                              const auto layers = probe_ics(net, opt, x, y);
                              for (size_t l = 0; l < layers.size(); ++l) {
                                csv << arm.name << "," << seed << "," << step << "," << l + 1 << "," << layers[l].name << ","
                                    << fmt(layers[l].relative_l2) << "," << fmt(layers[l].cosine) << "\n";
                                (*rel)[l].push_back(layers[l].relative_l2);
                                (*cosv)[l].push_back(layers[l].cosine);
                              }
                            };
                            on_eval_also(cb, [&extra, rel, cosv](const CurvePoint&) {
                              nlohmann::json r = nlohmann::json::array(), c = nlohmann::json::array();
                              for (auto& [l, v] : *rel) r.push_back(median(v));
                              for (auto& [l, v] : *cosv) c.push_back(median(v));
                              extra["median_relative_l2"] = r;
                              extra["median_cosine"] = c;
                            });
                          });
                    }});
  }

  {  // landscape
    auto a = std::make_shared<StudyArgs>();
    a->every = 10;
    a->lrs = {0.05f, 1.0f};
    CLI::App* cmd = add_study(study, "landscape",
                              "Santurkar et al. section 3.2: loss range, gradient predictiveness and effective "
                              "beta-smoothness along the gradient, with and without BN",
                              a);
    cmd->add_option("--every", a->every, "Measure every N steps")->check(CLI::Range(int64_t{1}, int64_t{1} << 30))->capture_default_str();
    cmd->add_option("--lrs", a->lrs, "Learning rates (comma-separated)")->delimiter(',')->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("landscape", a);
                      ModelConfig m = s.base_model("study landscape");
                      return s.run(
                          {{"no_bn", arm_config(m, false)}, {"bn", arm_config(m, true)}},
                          "arm,lr,seed,step,loss_range,grad_predictiveness,beta_smoothness",
                          [&](const Arm& arm, uint64_t seed, float lr, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                              nlohmann::json& extra) {
                            auto acc = std::make_shared<std::vector<std::array<double, 3>>>();
                            const int64_t every = a->every;
                            cb.after_backward = [&csv, &arm, seed, lr, acc, every](int64_t step, Net& net, Optimizer& opt,
                                                                                   const Tensor& x,
                                                                                   const std::vector<int32_t>& y, float) {
                              if (step % every != 0 && step != 1) return;
                              TrainingSnapshot snapshot(net, opt);  // BN buffers move in the probe's forwards
                              const LandscapeProbe pr = probe_landscape(
                                  net.parameters(), [&] { return cross_entropy(net.forward(x), y); }, lr, landscape_steps());
                              snapshot.restore();
                              csv << arm.name << "," << fmt(lr) << "," << seed << "," << step << "," << fmt(pr.loss_range)
                                  << "," << fmt(pr.grad_predictiveness) << "," << fmt(pr.beta_smoothness) << "\n";
                              acc->push_back({pr.loss_range, pr.grad_predictiveness, pr.beta_smoothness});
                            };
                            on_eval_also(cb, [&extra, acc](const CurvePoint&) {
                              const char* names[] = {"loss_range", "grad_predictiveness", "beta_smoothness"};
                              for (int k = 0; k < 3; ++k) {
                                std::vector<double> all, early;
                                for (size_t i = 0; i < acc->size(); ++i) {
                                  const double v = (*acc)[i][static_cast<size_t>(k)];
                                  if (!std::isfinite(v)) continue;
                                  all.push_back(v);
                                  if (i < acc->size() / 4 + 1) early.push_back(v);
                                }
                                extra[std::string("median_") + names[k]] = median(all);
                                extra[std::string("early_median_") + names[k]] = median(early);
                              }
                            });
                          });
                    }});
  }

  {  // init
    auto a = std::make_shared<StudyArgs>();
    a->flags.eval_every = "0";
    CLI::App* cmd = add_study(study, "init",
                              "Sensitivity to the initial weights' scale: every initial conv/linear weight times s, with "
                              "and without BN, final accuracy per s",
                              a);
    cmd->add_option("--scales", a->scales, "Scales of the initial weights (comma-separated)")->delimiter(',')->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("init", a);
                      ModelConfig m = s.base_model("study init");
                      std::vector<Arm> arms;
                      for (float scale : a->scales) {
                        MINIDL_CHECK(scale > 0 && std::isfinite(scale), "--scales: every scale must be positive, got ", scale);
                        for (bool bn : {false, true}) {
                          Arm arm{std::string(bn ? "bn" : "no_bn") + "@" + fmt(scale), arm_config(m, bn)};
                          arm.model.init_scale = scale;
                          arms.push_back(arm);
                        }
                      }
                      return s.run(arms, "arm,seed,final_test_acc",
                                   [](const Arm& arm, uint64_t seed, float, TrainConfig&, TrainCallbacks& cb,
                                      std::ostream& csv, nlohmann::json&) {
                                     on_eval_also(cb, [&csv, &arm, seed](const CurvePoint& p) {
                                       csv << arm.name << "," << seed << "," << fmt(p.test_acc) << "\n";
                                     });
                                   });
                    }});
  }

  {  // depth
    auto a = std::make_shared<StudyArgs>();
    a->flags.eval_every = "100";
    a->flags.steps = 1000;
    a->lrs = {0.05f, 0.5f, 2.0f};
    a->depths = {2, 4, 8, 16, 32};
    CLI::App* cmd = add_study(study, "depth",
                              "BN paper section 3.3: sigmoid networks of growing depth with and without BN over a learning-rate "
                              "grid; accuracy, steps to 90 %, and the fraction of saturated units (|pre-activation| > 4) per layer",
                              a);
    cmd->add_option("--depths", a->depths, "Hidden layers (comma-separated)")->delimiter(',')->capture_default_str();
    cmd->add_option("--width", a->width, "Units per hidden layer (mlp) or channels (cnn)")->capture_default_str();
    cmd->add_option("--net", a->net, "mlp: linear layers; cnn: 3x3 convolutions, pooled after the first and the middle one")
        ->check(CLI::IsMember({"mlp", "cnn"}))
        ->capture_default_str();
    cmd->add_option("--lrs", a->lrs, "Learning rates (comma-separated)")->delimiter(',')->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("depth", a);
                      MINIDL_CHECK(!a->flags.model.given(a->flags.model.arch_opt) && !a->flags.model.given(a->flags.model.bn_opt),
                                   "study depth builds its own networks: use --net, --depths, --width and --act, not --arch or --bn");
                      MINIDL_CHECK(a->width >= 1 && a->width <= 1024, "--width must be 1 to 1024, got ", a->width);
                      ModelConfig m = a->flags.model.config();
                      const std::string act = to_string(m.activation), w = std::to_string(a->width);
                      std::vector<Arm> arms;
                      for (int64_t depth : a->depths) {
                        MINIDL_CHECK(depth >= 1 && depth <= 64, "--depths: each depth must be 1 to 64, got ", depth);
                        for (bool bn : {false, true}) {
                          std::string spec = a->net == "mlp" ? "flatten" : "";
                          for (int64_t l = 0; l < depth; ++l) {
                            spec += a->net == "mlp" ? " linear(" + w + ")" : " conv(" + w + ",3,pad=1)";
                            spec += (bn ? " bn " : " ") + act;
                            if (a->net == "cnn" && (l == 0 || l == depth / 2)) spec += " maxpool(2)";
                          }
                          spec += a->net == "mlp" ? " linear(10)" : " flatten linear(10)";
                          Arm arm{std::string(bn ? "bn" : "no_bn") + "@" + std::to_string(depth), m};
                          arm.model.kind = ModelKind::Spec;
                          arm.model.arch = spec;
                          arm.model.batch_norm = bn;
                          arms.push_back(arm);
                        }
                      }
                      return s.run(
                          arms, "arm,depth,lr,seed,step,layer,saturated",
                          [](const Arm& arm, uint64_t seed, float lr, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                             nlohmann::json& extra) {
                            const std::string depth = arm.name.substr(arm.name.find('@') + 1);
                            auto reached = std::make_shared<int64_t>(-1);
                            auto last = std::make_shared<std::vector<double>>();
                            // The pre-activations of the step's forward: at step 1 and every 50 steps.
                            cb.after_backward = [&csv, &arm, seed, lr, depth, last](int64_t step, Net& net, Optimizer&,
                                                                                   const Tensor&, const std::vector<int32_t>&,
                                                                                   float) {
                              const bool measure = step == 1 || step % 50 == 0;
                              if (measure && !net.hidden_inputs().empty()) {
                                last->clear();
                                const auto& hs = net.hidden_inputs();
                                for (size_t l = 0; l < hs.size(); ++l) {
                                  int64_t sat = 0;
                                  const float* x = hs[l].data();
                                  for (int64_t i = 0; i < hs[l].numel(); ++i) sat += std::abs(x[i]) > 4.0f;
                                  const double f = static_cast<double>(sat) / static_cast<double>(hs[l].numel());
                                  last->push_back(f);
                                  csv << arm.name << "," << depth << "," << fmt(lr) << "," << seed << "," << step << "," << l + 1
                                      << "," << fmt(f) << "\n";
                                }
                              }
                              // Record the forward of step 1 and then of every 50th step only.
                              net.record_hidden((step + 1) % 50 == 0);
                            };
                            cb.on_start = [](Net& net) { net.record_hidden(true); };
                            on_eval_also(cb, [reached, last, &extra](const CurvePoint& p) {
                              if (*reached < 0 && p.test_acc >= 0.9) *reached = p.step;
                              extra["steps_to_90"] = *reached >= 0 ? nlohmann::json(*reached) : nlohmann::json(nullptr);
                              extra["saturated_last"] = *last;
                            });
                          });
                    }});
  }

  {  // skipinit
    auto a = std::make_shared<StudyArgs>();
    a->flags.eval_every = "0";
    a->flags.steps = 500;
    a->flags.model.act = "relu";
    a->lrs = {0.01f, 0.03f, 0.1f, 0.3f, 1.0f, 3.0f};
    a->depths = {8, 16, 32};
    a->width = 64;
    CLI::App* cmd = add_study(study, "skipinit",
                              "De & Smith 2020: residual MLPs with BN, without normalization, and without it but with a "
                              "zero-initialized gain on each branch (SkipInit); the largest stable lr, accuracy, and each "
                              "branch's output variance relative to its input at initialization",
                              a);
    cmd->add_option("--depths", a->depths, "Residual blocks (comma-separated)")->delimiter(',')->capture_default_str();
    cmd->add_option("--width", a->width, "Units per layer")->capture_default_str();
    cmd->add_option("--lrs", a->lrs, "Learning rates (comma-separated)")->delimiter(',')->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("skipinit", a);
                      MINIDL_CHECK(!a->flags.model.given(a->flags.model.arch_opt) && !a->flags.model.given(a->flags.model.bn_opt),
                                   "study skipinit builds its own networks: use --depths, --width and --act, not --arch or --bn");
                      MINIDL_CHECK(a->width >= 1 && a->width <= 1024, "--width must be 1 to 1024, got ", a->width);
                      ModelConfig m = a->flags.model.config();
                      const std::string act = to_string(m.activation), w = std::to_string(a->width);
                      const std::string lin = "linear(" + w + ")";
                      std::vector<Arm> arms;
                      for (int64_t depth : a->depths) {
                        MINIDL_CHECK(depth >= 1 && depth <= 128, "--depths: each depth must be 1 to 128, got ", depth);
                        for (const char* kind : {"bn", "none", "skipinit"}) {
                          const std::string k = kind;
                          std::string spec = "flatten " + lin + (k == "bn" ? " bn " : " ") + act;
                          for (int64_t b = 0; b < depth; ++b) {
                            if (k == "bn") spec += " res(" + lin + " bn " + act + " " + lin + " bn) " + act;
                            else if (k == "none") spec += " res(" + lin + " " + act + " " + lin + ") " + act;
                            else spec += " res(" + lin + " " + act + " " + lin + " gain(0)) " + act;
                          }
                          spec += " linear(10)";
                          Arm arm{k + "@" + std::to_string(depth), m};
                          arm.model.kind = ModelKind::Spec;
                          arm.model.arch = spec;
                          arm.model.batch_norm = k == "bn";
                          arms.push_back(arm);
                        }
                      }
                      return s.run(
                          arms, "arm,depth,lr,seed,block,branch_var_ratio",
                          [](const Arm& arm, uint64_t seed, float lr, TrainConfig&, TrainCallbacks& cb, std::ostream& csv,
                             nlohmann::json& extra) {
                            const std::string depth = arm.name.substr(arm.name.find('@') + 1);
                            // At step 1 (the initial weights), each block's Var(branch(h)) / Var(h)
                            // on the step's batch; the forwards are undone (TrainingSnapshot).
                            cb.after_backward = [&csv, &arm, &extra, seed, lr, depth](int64_t step, Net& net, Optimizer& opt,
                                                                                    const Tensor& images,
                                                                                    const std::vector<int32_t>&, float) {
                              if (step != 1) return;
                              auto variance = [](const Tensor& t) {
                                double s = 0, q = 0;
                                for (int64_t i = 0; i < t.numel(); ++i) s += t.data()[i], q += double(t.data()[i]) * t.data()[i];
                                const double n = static_cast<double>(t.numel()), mu = s / n;
                                return q / n - mu * mu;
                              };
                              TrainingSnapshot snapshot(net, opt);
                              std::vector<double> ratios;
                              {
                                NoGradGuard no_grad;
                                Tensor h = images;
                                for (const auto& [name, layer] : net.children()) {
                                  if (auto res = std::dynamic_pointer_cast<Residual>(layer)) {
                                    const double vin = variance(h);
                                    ratios.push_back(vin > 0 ? variance(res->body()->forward(h)) / vin : 0.0);
                                  }
                                  h = layer->forward(h);
                                }
                              }
                              snapshot.restore();
                              for (size_t b = 0; b < ratios.size(); ++b)
                                csv << arm.name << "," << depth << "," << fmt(lr) << "," << seed << "," << b + 1 << ","
                                    << fmt(ratios[b]) << "\n";
                              extra["branch_var_ratio"] = ratios;
                            };
                          },
                          [](nlohmann::json& j) {
                            // Stable: not diverged and above 50 % (chance is 10 %). Per arm and seed,
                            // the largest stable lr of the grid; the accuracy at each seed's best lr.
                            std::map<std::string, std::map<uint64_t, std::pair<double, double>>> best;  // lr, acc
                            std::map<std::string, std::map<uint64_t, double>> top;
                            std::vector<std::string> order;
                            for (const auto& r : j["runs"]) {
                              const std::string arm = r["arm"];
                              if (!best.count(arm)) order.push_back(arm);
                              const uint64_t seed = r["seed"];
                              auto& b = best[arm][seed];
                              auto& t = top[arm][seed];
                              const double lr = r["lr"].get<double>();
                              const bool ok = !r["diverged"].get<bool>() && !r["final_test_acc"].is_null() &&
                                              r["final_test_acc"].get<double>() >= 0.5;
                              if (ok && lr > b.first) b.first = lr;
                              if (!r["final_test_acc"].is_null()) t = std::max(t, r["final_test_acc"].get<double>());
                            }
                            nlohmann::json findings = nlohmann::json::array(), table = nlohmann::json::object();
                            for (const std::string& arm : order) {
                              std::vector<double> lrs, accs;
                              for (const auto& [seed, b] : best[arm]) lrs.push_back(b.first);
                              for (const auto& [seed, acc] : top[arm]) accs.push_back(100 * acc);
                              std::sort(lrs.begin(), lrs.end());
                              std::sort(accs.begin(), accs.end());
                              auto med = [](const std::vector<double>& v) {
                                return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
                              };
                              table[arm] = {{"largest_stable_lr", lrs}, {"best_test_acc", accs}};
                              char line[200];
                              std::snprintf(line, sizeof line,
                                            "%-12s largest stable lr %g [%g-%g], best accuracy over the grid %.2f [%.2f-%.2f] %%",
                                            arm.c_str(), med(lrs), lrs.front(), lrs.back(), med(accs), accs.front(), accs.back());
                              findings.push_back(line);
                            }
                            j["skipinit"] = table;
                            j["findings"] = findings;
                          });
                    }});
  }

  {  // init-gradient
    auto a = std::make_shared<StudyArgs>();
    a->flags.eval_every = "0";
    a->flags.steps = 1;
    a->flags.batch_size = 128;
    a->flags.model.act = "relu";
    CLI::App* cmd = add_study(study, "init-gradient",
                              "Yang et al. 2019: at initialization, the gradient norm of each linear layer of deep MLPs "
                              "with BN, without BN and with BN in residual blocks, and its growth per layer toward the input",
                              a);
    cmd->add_option("--depths", a->depths, "Hidden layers of the MLPs (comma-separated)")->delimiter(',')->capture_default_str();
    cmd->add_option("--width", a->width, "Units per hidden layer")->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("init-gradient", a);
                      MINIDL_CHECK(!a->flags.model.given(a->flags.model.arch_opt) && !a->flags.model.given(a->flags.model.bn_opt),
                                   "study init-gradient builds its own MLPs: use --depths, --width and --act, not --arch or --bn");
                      MINIDL_CHECK(a->width >= 1 && a->width <= 4096, "--width must be 1 to 4096, got ", a->width);
                      ModelConfig m = a->flags.model.config();
                      const std::string act = to_string(m.activation);
                      std::vector<Arm> arms;
                      for (int64_t depth : a->depths) {
                        MINIDL_CHECK(depth >= 2 && depth <= 256, "--depths: each depth must be 2 to 256, got ", depth);
                        for (const char* kind : {"no_bn", "bn", "res"}) {
                          const std::string w = std::to_string(a->width);
                          const std::string plain = " linear(" + w + ")" + " " + act, normed = " linear(" + w + ") bn " + act;
                          std::string spec = "flatten";
                          for (int64_t l = 0; l < depth; ++l) {
                            if (std::string(kind) == "no_bn") spec += plain;
                            else if (std::string(kind) == "bn" || l == 0) spec += normed;
                            else spec += " res(" + normed.substr(1) + ")";
                          }
                          spec += " linear(10)";
                          Arm arm{std::string(kind) + "@" + std::to_string(depth), m};
                          arm.model.kind = ModelKind::Spec;
                          arm.model.arch = spec;
                          arm.model.batch_norm = std::string(kind) != "no_bn";
                          arms.push_back(arm);
                        }
                      }
                      return s.run(
                          arms, "arm,depth,seed,layer,grad_norm",
                          [](const Arm& arm, uint64_t seed, float, TrainConfig& c, TrainCallbacks& cb, std::ostream& csv,
                             nlohmann::json& extra) {
                            c.steps = 1;
                            const std::string depth = arm.name.substr(arm.name.find('@') + 1);
                            cb.after_backward = [&csv, &arm, &extra, seed, depth](int64_t step, Net& net, Optimizer&,
                                                                                  const Tensor&, const std::vector<int32_t>&,
                                                                                  float) {
                              if (step != 1) return;
                              std::vector<double> norms;
                              for (const auto& p : net.named_parameters())
                                if (p.tensor.dim() == 2 && p.tensor.grad().defined()) norms.push_back(l2(p.tensor.grad()));
                              for (size_t l = 0; l < norms.size(); ++l)
                                csv << arm.name << "," << depth << "," << seed << "," << l + 1 << "," << fmt(norms[l]) << "\n";
                              // Least squares of log ||grad W_l|| on l over the hidden layers 2..D,
                              // whose weights are all W x W (the first sees the 784 pixels, the
                              // last is the output layer): the growth per layer toward the input is
                              // exp(-slope).
                              const size_t n = norms.size() - 1;
                              double sx = 0, sy = 0, sxx = 0, sxy = 0;
                              const double m = static_cast<double>(n - 1);
                              for (size_t l = 1; l < n; ++l) {
                                const double x = static_cast<double>(l + 1), y = std::log(norms[l]);
                                sx += x, sy += y, sxx += x * x, sxy += x * y;
                              }
                              const double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
                              extra["grad_norms"] = norms;
                              extra["growth_per_layer"] = std::exp(-slope);
                              extra["layer2_over_last_hidden"] = norms[1] / norms[n - 1];
                            };
                          },
                          [](nlohmann::json& j) {
                            std::map<std::string, std::vector<double>> growth;
                            std::vector<std::string> order;
                            for (const auto& r : j["runs"]) {
                              const std::string arm = r["arm"].get<std::string>();
                              if (!growth.count(arm)) order.push_back(arm);
                              if (r.contains("growth_per_layer")) growth[arm].push_back(r["growth_per_layer"].get<double>());
                            }
                            nlohmann::json findings = nlohmann::json::array(), table = nlohmann::json::object();
                            for (const std::string& arm : order) {
                              std::vector<double> v = growth[arm];
                              if (v.empty()) continue;
                              std::sort(v.begin(), v.end());
                              const double med = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
                              table[arm] = {{"median", med}, {"min", v.front()}, {"max", v.back()}, {"n", v.size()}};
                              char line[160];
                              std::snprintf(line, sizeof line, "%-10s gradient growth per layer toward the input: %.4f [%.4f-%.4f] over %zu seeds",
                                            arm.c_str(), med, v.front(), v.back(), v.size());
                              findings.push_back(line);
                            }
                            j["growth_per_layer"] = table;
                            j["findings"] = findings;
                          });
                    }});
  }

  {  // weight-decay
    auto a = std::make_shared<StudyArgs>();
    a->flags.eval_every = "200";
    a->flags.steps = 1500;
    a->flags.model.act = "relu";
    CLI::App* cmd = add_study(study, "weight-decay",
                              "BN's scale invariance: a BN-normalized layer's weight norm and effective lr lr/||w||^2 over "
                              "training with and without weight decay, and the identities w.g = 0 and g(2w) = g(w)/2 checked "
                              "at every step",
                              a);
    cmd->add_option("--decay", a->decay, "The decay of the weight-decay arm (SGD's coupled L2, as PyTorch's weight_decay)")
        ->capture_default_str();
    cmd->add_option("--layer", a->layer, "The weight followed by BN to follow (a state-dict name)")->capture_default_str();
    subs.push_back({cmd, [a]() -> int {
                      Study s("weight-decay", a);
                      MINIDL_CHECK(a->decay > 0 && std::isfinite(a->decay), "--decay must be a positive number, got ", a->decay);
                      MINIDL_CHECK(!a->flags.model.given(a->flags.model.bn_opt),
                                   "study weight-decay runs its model with BN (the identities need it): drop --bn/--no-bn");
                      ModelConfig m = a->flags.model.config();
                      if (m.kind != ModelKind::Spec) m.batch_norm = true;
                      Arm plain{"no_decay", m}, decayed{"decay", m};
                      const std::string layer = a->layer;
                      const float decay = a->decay;
                      return s.run(
                          {plain, decayed}, "arm,seed,step,lr,weight_norm,grad_norm,effective_lr,cos_w_g,grad_scale_ratio,loss_change",
                          [layer, decay](const Arm& arm, uint64_t seed, float, TrainConfig& c, TrainCallbacks& cb,
                                         std::ostream& csv, nlohmann::json& extra) {
                            c.weight_decay = arm.name == "decay" ? decay : 0.0f;
                            struct Worst {
                              double cos = 0, ratio = 0, loss = 0;
                              double first_norm = -1, last_norm = 0, first_eff = 0, last_eff = 0;
                            };
                            auto worst = std::make_shared<Worst>();
                            cb.after_backward = [&csv, &arm, &extra, seed, layer, worst](
                                                    int64_t step, Net& net, Optimizer& opt, const Tensor& images,
                                                    const std::vector<int32_t>& labels, float loss) {
                              Tensor w;
                              for (const auto& p : net.named_parameters())
                                if (p.name == layer) w = p.tensor;
                              MINIDL_CHECK(w.defined(), "--layer: the model has no parameter '", layer, "'");
                              // The loss gradient alone: weight decay is added by the optimizer, after this.
                              const Tensor g = w.grad().clone();
                              double wg = 0;
                              for (int64_t i = 0; i < w.numel(); ++i) wg += double(w.data()[i]) * g.data()[i];
                              const double wn = l2(w), gn = l2(g), lr = opt.lr();
                              // The same batch with w doubled: BN makes the loss the same and the
                              // gradient half. Everything the probe changes is put back.
                              double g2n = 0, loss2 = 0;
                              {
                                TrainingSnapshot snapshot(net, opt);
                                Tensor(w).copy_(mul(w.detach(), 2.0f));
                                net.zero_grad();
                                Tensor l2loss = cross_entropy(net.forward(images), labels);
                                loss2 = l2loss.item();
                                l2loss.backward();
                                g2n = l2(w.grad());
                                snapshot.restore();
                              }
                              const double cos = gn > 0 && wn > 0 ? wg / (wn * gn) : 0.0;
                              const double ratio = gn > 0 ? 2.0 * g2n / gn : 1.0;
                              const double dloss = std::abs(loss2 - double(loss)) / std::max(1e-12, std::abs(double(loss)));
                              worst->cos = std::max(worst->cos, std::abs(cos));
                              worst->ratio = std::max(worst->ratio, std::abs(ratio - 1.0));
                              worst->loss = std::max(worst->loss, dloss);
                              const double eff = lr / (wn * wn);
                              if (worst->first_norm < 0) worst->first_norm = wn, worst->first_eff = eff;
                              worst->last_norm = wn, worst->last_eff = eff;
                              csv << arm.name << "," << seed << "," << step << "," << fmt(lr) << "," << fmt(wn) << "," << fmt(gn)
                                  << "," << fmt(eff) << "," << fmt(cos) << "," << fmt(ratio) << "," << fmt(dloss) << "\n";
                              extra["max_abs_cos_w_g"] = worst->cos;
                              extra["max_grad_scale_error"] = worst->ratio;
                              extra["max_loss_change"] = worst->loss;
                              extra["weight_norm_first_last"] = {worst->first_norm, worst->last_norm};
                              extra["effective_lr_first_last"] = {worst->first_eff, worst->last_eff};
                            };
                          },
                          [](nlohmann::json& j) {
                            nlohmann::json findings = nlohmann::json::array();
                            for (const char* arm : {"no_decay", "decay"}) {
                              std::vector<double> cos, ratio, growth, eff;
                              for (const auto& r : j["runs"]) {
                                if (r["arm"] != arm || !r.contains("max_abs_cos_w_g")) continue;
                                cos.push_back(r["max_abs_cos_w_g"].get<double>());
                                ratio.push_back(r["max_grad_scale_error"].get<double>());
                                growth.push_back(r["weight_norm_first_last"][1].get<double>() / r["weight_norm_first_last"][0].get<double>());
                                eff.push_back(r["effective_lr_first_last"][1].get<double>() / r["effective_lr_first_last"][0].get<double>());
                              }
                              if (cos.empty()) continue;
                              auto range = [](std::vector<double> v) {
                                std::sort(v.begin(), v.end());
                                const double med = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
                                char b[96];
                                std::snprintf(b, sizeof b, "%.4g [%.4g-%.4g]", med, v.front(), v.back());
                                return std::string(b);
                              };
                              findings.push_back(std::string(arm) + ": ||w|| last/first " + range(growth) + ", lr/||w||^2 last/first " +
                                                 range(eff) + "; over every step, max |cos(w, g)| " + range(cos) +
                                                 ", max |2 ||g(2w)|| / ||g(w)|| - 1| " + range(ratio));
                            }
                            j["findings"] = findings;
                          });
                    }});
  }

  return {study, [subs]() -> int {
            for (const auto& [app, run] : subs)
              if (app->parsed()) return run();
            return kExitUsage;
          }};
}

}  // namespace minidl::app
