// The JSON schema of multi-seed experiments (apps/minidl/experiment.h), checked the same way for
// minidl's files and for scripts/pytorch_peer.py's: every run has its fields, and every summary
// entry is recomputed from the runs it summarizes.
#pragma once

#include <catch2/catch.hpp>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace minidl::testing {

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline void check_experiment_json(const nlohmann::json& j, size_t expected_runs) {
  using nlohmann::json;
  REQUIRE(j.contains("config"));
  REQUIRE(j["runs"].size() == expected_runs);
  for (const json& r : j["runs"]) {
    INFO(r.dump());
    for (const char* k : {"arm", "lr", "seed", "final_test_acc", "final_test_loss", "diverged", "diverged_step", "steps",
                          "images_per_s", "steps_to"})
      REQUIRE(r.contains(k));
    REQUIRE(r["diverged"].is_boolean());
    REQUIRE(r["diverged"].get<bool>() == r["final_test_acc"].is_null());
    if (!r["final_test_acc"].is_null()) {
      REQUIRE(r["final_test_acc"].get<double>() >= 0.0);
      REQUIRE(r["final_test_acc"].get<double>() <= 1.0);  // a fraction, not a percentage
    }
    REQUIRE(r["steps_to_measured"].is_boolean());
    for (const char* level : {"0.9", "0.95", "0.97", "0.98"}) {
      REQUIRE(r["steps_to"].contains(level));
      if (!r["steps_to_measured"].get<bool>()) REQUIRE(r["steps_to"][level].is_null());
    }
  }
  size_t covered = 0;
  for (const json& s : j["summary"]) {
    INFO(s.dump());
    std::vector<double> acc, to95;
    int64_t n = 0, diverged = 0, measured = 0;
    for (const json& r : j["runs"])
      if (r["arm"] == s["arm"] && r["lr"].get<double>() == s["lr"].get<double>()) {
        ++n;
        measured += r["steps_to_measured"].get<bool>();
        diverged += r["diverged"].get<bool>();
        if (!r["final_test_acc"].is_null()) acc.push_back(r["final_test_acc"].get<double>());
        if (!r["steps_to"]["0.95"].is_null()) to95.push_back(r["steps_to"]["0.95"].get<double>());
      }
    covered += static_cast<size_t>(n);
    REQUIRE(s["n"].get<int64_t>() == n);
    REQUIRE(s["diverged"].get<int64_t>() == diverged);
    REQUIRE(s["finished"].get<size_t>() == acc.size());
    const json& a = s["final_test_acc"];
    if (acc.empty()) {
      REQUIRE(a["median"].is_null());
    } else {
      REQUIRE(a["median"].get<double>() == Approx(median_of(acc)).epsilon(1e-12));
      REQUIRE(a["min"].get<double>() == *std::min_element(acc.begin(), acc.end()));
      REQUIRE(a["max"].get<double>() == *std::max_element(acc.begin(), acc.end()));
      double mean = 0;
      for (double x : acc) mean += x;
      REQUIRE(a["mean"].get<double>() == Approx(mean / static_cast<double>(acc.size())).epsilon(1e-12));
    }
    const json& t = s["steps_to"]["0.95"];
    REQUIRE(t["reached"].get<size_t>() == to95.size());
    REQUIRE(t["measured"].get<int64_t>() == measured);
    if (!to95.empty()) REQUIRE(t["median"].get<double>() == Approx(median_of(to95)));
  }
  REQUIRE(covered == expected_runs);  // every run is in exactly one summary cell
  for (const json& p : j["paired"]) {
    int64_t better = 0, n = 0;
    auto score = [](const json& r) { return r["final_test_acc"].is_null() ? -1.0 : r["final_test_acc"].get<double>(); };
    for (const json& ra : j["runs"])
      for (const json& rb : j["runs"])
        if (ra["arm"] == p["a"] && rb["arm"] == p["b"] && ra["seed"] == rb["seed"] &&
            ra["lr"].get<double>() == p["lr"].get<double>() && rb["lr"].get<double>() == p["lr"].get<double>()) {
          ++n;
          better += score(ra) > score(rb);
        }
    REQUIRE(p["n"].get<int64_t>() == n);
    REQUIRE(p["a_better_on"].get<int64_t>() == better);
  }
}

}  // namespace minidl::testing
