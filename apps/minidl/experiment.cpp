#include "experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "cli.h"

namespace minidl::app {

std::vector<uint64_t> parse_seeds(const std::string& text) {
  auto number = [&](const std::string& s) -> uint64_t {
    size_t used = 0;
    unsigned long long v = 0;
    try {
      if (s.empty() || s[0] == '-' || s[0] == '+') throw std::invalid_argument(s);
      v = std::stoull(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MINIDL_CHECK(used == s.size() && used > 0, "--seeds: expected a count (5) or a list (0,1,2), got '", text, "'");
    return v;
  };
  std::vector<uint64_t> seeds;
  if (text.find(',') == std::string::npos) {
    const uint64_t n = number(text);
    MINIDL_CHECK(n >= 1 && n <= 10000, "--seeds: a count must be 1 to 10000, got ", n);
    for (uint64_t s = 0; s < n; ++s) seeds.push_back(s);
    return seeds;
  }
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    seeds.push_back(number(text.substr(start, comma - start)));
    start = comma + 1;
  }
  std::set<uint64_t> distinct(seeds.begin(), seeds.end());
  MINIDL_CHECK(distinct.size() == seeds.size(), "--seeds: the list '", text, "' repeats a seed");
  return seeds;
}

const std::vector<double>& accuracy_levels() {
  static const std::vector<double> levels{0.90, 0.95, 0.97, 0.98};
  return levels;
}

std::string level_key(double level) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%g", level);
  return buf;
}

nlohmann::json run_record(const std::string& arm, float lr, uint64_t seed, const TrainResult& r) {
  // With one evaluation (at the end) the step a level was first reached is not known.
  const bool measured = r.curve.size() >= 2;
  nlohmann::json steps_to = nlohmann::json::object();
  for (double level : accuracy_levels())
    steps_to[level_key(level)] = measured ? steps_to_reach(r.curve, level) : nlohmann::json(nullptr);
  const nlohmann::json null;
  return {{"arm", arm},
          {"lr", as_typed(lr)},
          {"seed", seed},
          {"final_test_acc", r.diverged ? null : number_or_null(r.final_eval.accuracy)},
          {"final_test_loss", r.diverged ? null : number_or_null(r.final_eval.loss)},
          {"diverged", r.diverged},
          {"diverged_step", r.diverged ? nlohmann::json(r.diverged_step) : null},
          {"diverged_reason", r.diverged ? nlohmann::json(r.diverged_reason) : null},
          {"skipped_steps", r.skipped_steps},
          {"steps", r.steps},
          {"images_per_s", r.images_per_s},
          {"train_seconds", r.train_seconds},
          {"steps_to", steps_to},
          {"steps_to_measured", measured}};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

nlohmann::json stats(std::vector<double> v) {
  const nlohmann::json null;
  if (v.empty()) return {{"median", null}, {"mean", null}, {"std", null}, {"min", null}, {"max", null}};
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double med = median(v);
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(n);
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return {{"median", med}, {"mean", mean}, {"std", std::sqrt(var / static_cast<double>(n))}, {"min", v.front()},
          {"max", v.back()}};
}

nlohmann::json summarize(const nlohmann::json& runs) {
  std::vector<std::pair<std::string, double>> cells;
  for (const auto& r : runs) {
    std::pair<std::string, double> key{r["arm"].get<std::string>(), r["lr"].get<double>()};
    if (std::find(cells.begin(), cells.end(), key) == cells.end()) cells.push_back(key);
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [arm, lr] : cells) {
    std::vector<double> acc;
    std::map<std::string, std::vector<double>> reached;
    int64_t n = 0, diverged = 0, measured = 0;
    for (const auto& r : runs) {
      if (r["arm"] != arm || r["lr"].get<double>() != lr) continue;
      ++n;
      measured += r.value("steps_to_measured", true);
      if (r["diverged"].get<bool>()) ++diverged;
      if (!r["final_test_acc"].is_null()) acc.push_back(r["final_test_acc"].get<double>());
      for (double level : accuracy_levels()) {
        const auto& s = r["steps_to"][level_key(level)];
        if (!s.is_null()) reached[level_key(level)].push_back(s.get<double>());
      }
    }
    nlohmann::json steps_to = nlohmann::json::object();
    for (double level : accuracy_levels()) {
      const auto& v = reached[level_key(level)];
      nlohmann::json s = stats(v);
      steps_to[level_key(level)] = {{"reached", v.size()}, {"measured", measured}, {"median", s["median"]},
                                     {"min", s["min"]}, {"max", s["max"]}};
    }
    out.push_back({{"arm", arm}, {"lr", lr}, {"n", n}, {"finished", acc.size()}, {"final_test_acc", stats(acc)},
                   {"steps_to", steps_to}, {"diverged", diverged}});
  }
  return out;
}

nlohmann::json paired(const nlohmann::json& runs, const std::string& a, const std::string& b) {
  std::vector<double> lrs;
  for (const auto& r : runs)
    if (std::find(lrs.begin(), lrs.end(), r["lr"].get<double>()) == lrs.end()) lrs.push_back(r["lr"].get<double>());
  auto score = [](const nlohmann::json& r) { return r["final_test_acc"].is_null() ? -1.0 : r["final_test_acc"].get<double>(); };
  nlohmann::json out = nlohmann::json::array();
  for (double lr : lrs) {
    int64_t better = 0, n = 0;
    for (const auto& ra : runs) {
      if (ra["arm"] != a || ra["lr"].get<double>() != lr) continue;
      for (const auto& rb : runs)
        if (rb["arm"] == b && rb["lr"].get<double>() == lr && rb["seed"] == ra["seed"]) {
          ++n;
          better += score(ra) > score(rb);
        }
    }
    if (n) out.push_back({{"lr", lr}, {"a", a}, {"b", b}, {"a_better_on", better}, {"n", n}});
  }
  return out;
}

std::string median_range(const nlohmann::json& s, bool percent) {
  if (s["median"].is_null()) return "-";
  char buf[96];
  const double k = percent ? 100.0 : 1.0;
  if (percent)
    std::snprintf(buf, sizeof buf, "%.2f [%.2f-%.2f]", k * s["median"].get<double>(), k * s["min"].get<double>(),
                  k * s["max"].get<double>());
  else
    std::snprintf(buf, sizeof buf, "%g [%g-%g]", s["median"].get<double>(), s["min"].get<double>(), s["max"].get<double>());
  return buf;
}

void print_summary(const nlohmann::json& summary, bool with_lr) {
  std::printf("\n%-10s %s%-26s %-26s %-26s %s\n", "arm", with_lr ? "      lr " : "", "final test acc % (seeds)",
              "steps to 95%", "steps to 98%", "diverged");
  for (const auto& s : summary) {
    auto reach = [&](const char* key) {
      const auto& t = s["steps_to"][key];
      if (t.value("measured", int64_t{1}) == 0) return std::string("not measured");
      return median_range(t, false) + " (" + std::to_string(t["reached"].get<int64_t>()) + " of " +
             std::to_string(s["n"].get<int64_t>()) + ")";
    };
    char lr[32] = "";
    if (with_lr) std::snprintf(lr, sizeof lr, "%8g ", s["lr"].get<double>());
    std::printf("%-10s %s%-26s %-26s %-26s %lld of %lld\n", s["arm"].get<std::string>().c_str(), lr,
                median_range(s["final_test_acc"], true).c_str(), reach("0.95").c_str(), reach("0.98").c_str(),
                static_cast<long long>(s["diverged"].get<int64_t>()), static_cast<long long>(s["n"].get<int64_t>()));
  }
  std::printf("(median [min-max] over seeds; steps to a level: median over the seeds that reached it, k of n;\n"
              " \"not measured\" where the runs evaluated only at the end: see --eval-every)\n");
}

}  // namespace minidl::app
