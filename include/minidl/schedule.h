// Learning-rate schedules as torch.optim.lr_scheduler defines them, stepped once per optimizer
// step (t = 0 for the first step). `--lr-schedule`:
//   constant                      lr
//   step:S[:G]                    StepLR(step_size=S, gamma=G=0.1):       lr * G^floor(t/S)
//   multistep:M1/M2/...[:G]       MultiStepLR(milestones, gamma=G=0.1):   lr * G^(milestones <= t)
//   cosine[:ETA_MIN]              CosineAnnealingLR(T_max=total steps, eta_min=ETA_MIN=0):
//                                 ETA_MIN + (lr - ETA_MIN) (1 + cos(pi t / T_max)) / 2
//   onecycle[:PCT]                OneCycleLR(max_lr=lr, total_steps, pct_start=PCT=0.3, cosine
//                                 annealing, div_factor 25, final_div_factor 1e4): lr/25 up to lr
//                                 over the first PCT of the steps, then down to lr/25e4; SGD's
//                                 momentum cycles 0.95 -> 0.85 -> 0.95 against it (cycle_momentum)
// and `--warmup N`: LinearLR(start_factor=1/3, total_iters=N) chained with it (ChainedScheduler):
// the factor rises linearly from 1/3 to 1 over the first N steps and multiplies the schedule's lr.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl {

struct LrSchedule {
  enum class Kind { Constant, Step, MultiStep, Cosine, OneCycle } kind = Kind::Constant;
  int64_t step_size = 0;
  std::vector<int64_t> milestones;
  double gamma = 0.1;
  double eta_min = 0.0;
  double pct_start = 0.3;
  int64_t warmup = 0;
  double warmup_start = 1.0 / 3.0;

  // The learning rate of step t (0-based) for a base (or, for onecycle, maximum) lr over
  // total_steps steps.
  double lr_at(int64_t t, double base_lr, int64_t total_steps) const;
  // OneCycle's momentum at step t; other schedules leave momentum alone (returns false).
  bool momentum_at(int64_t t, int64_t total_steps, double& momentum) const;
};

// Parses --lr-schedule's text (above) and --warmup; throws Error naming the bad part.
LrSchedule parse_lr_schedule(const std::string& text, int64_t warmup = 0);
std::string to_string(const LrSchedule& schedule);

}  // namespace minidl
