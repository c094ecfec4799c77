// Multi-seed experiments (compare, sweep, the studies): every run is recorded with its arm,
// learning rate and seed, and every (arm, lr) cell is summarized over its seeds.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "minidl/train/trainer.h"

namespace minidl::app {

// "--seeds 0,1,2" (a list) or "--seeds 5" (0..4). Distinct seeds, at least one.
std::vector<uint64_t> parse_seeds(const std::string& text);

// The test-accuracy levels steps_to is reported for.
const std::vector<double>& accuracy_levels();
// "0.95"
std::string level_key(double level);

// One run: {"arm", "lr", "seed", "final_test_acc", "final_test_loss", "diverged", "diverged_step",
// "diverged_reason", "steps", "images_per_s", "train_seconds", "steps_to": {"0.9": step|null, ...},
// "steps_to_measured"}. Accuracies are fractions; a diverged run has null accuracy and loss. The
// steps to a level are null, and steps_to_measured false, when the run evaluated only at its end.
// lr is stored as typed (as_typed).
nlohmann::json run_record(const std::string& arm, float lr, uint64_t seed, const TrainResult& r);

// The median (0 for no values).
double median(std::vector<double> values);

// Median, mean, population std, min and max (nulls when values is empty).
nlohmann::json stats(std::vector<double> values);

// Per (arm, lr), in the order they first appear in runs: {"arm", "lr", "n", "finished",
// "final_test_acc": stats over the runs that finished, "steps_to": {"0.95": {"reached": k,
// "measured": how many runs evaluated during training, "median", "min", "max"}, ...} over the runs that reached the level, "diverged": count}.
nlohmann::json summarize(const nlohmann::json& runs);

// Per lr: on how many seeds arm a ended with a higher test accuracy than arm b (a diverged run
// loses to one that finished): [{"lr", "a", "b", "a_better_on", "n"}].
nlohmann::json paired(const nlohmann::json& runs, const std::string& a, const std::string& b);

// "97.39 [96.80-97.60]" (percent) or "350 [300-400]" from a stats object; "-" when empty.
std::string median_range(const nlohmann::json& s, bool percent);

// The summary as a text table, one line per (arm, lr).
void print_summary(const nlohmann::json& summary, bool with_lr);

}  // namespace minidl::app
