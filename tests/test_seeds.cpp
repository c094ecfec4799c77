// Multi-seed experiments: minidl's compare and sweep, and the PyTorch peer, write the same
// schema, and each summary is the summary of its runs.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "experiment_schema.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

namespace {
int sh(const std::string& cmd) {
  const int raw = std::system(cmd.c_str());
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}
nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}
bool have_torch() { return sh("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0; }
}  // namespace

TEST_CASE("seeds: sweep --seeds 3 keeps every run and summarizes every (arm, lr)", "[app][seeds]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 96, 30);
  const std::string out = d.path() + "/sweep";
  REQUIRE(sh(std::string(MINIDL_APP_PATH) + " --blas-core library sweep --data " + d.path() +
             " --seeds 3 --lrs 0.05,3 --steps 6 --batch-size 16 --quiet --out " + out + " > " + d.path() + "/o.txt 2>&1") == 0);
  const auto j = read_json(out + "/sweep.json");
  minidl::testing::check_experiment_json(j, 2 * 3 * 2);
  REQUIRE(j["summary"].size() == 4);
  REQUIRE(j["paired"].size() == 2);
  REQUIRE(j["seeds"] == nlohmann::json::array({0, 1, 2}));
  // The learning rates as typed, not as the nearest float (0.05000000074505806).
  REQUIRE(j["lrs"] == nlohmann::json::parse("[0.05, 3]"));
  for (const auto& r : j["runs"]) {
    REQUIRE((r["lr"].get<double>() == 0.05 || r["lr"].get<double>() == 3.0));
    // A sweep evaluates only at the end of each run: when a level was reached is not known.
    REQUIRE(r["steps_to_measured"] == false);
  }
  for (const auto& s : j["summary"]) REQUIRE(s["steps_to"]["0.95"]["measured"] == 0);
  std::ifstream printed(d.path() + "/o.txt");
  const std::string text((std::istreambuf_iterator<char>(printed)), std::istreambuf_iterator<char>());
  REQUIRE(text.find("not measured") != std::string::npos);
  std::ifstream csv(out + "/sweep.csv");
  std::string header;
  std::getline(csv, header);
  REQUIRE(header == "lr,arm,seed,final_test_acc,final_test_loss,diverged,diverged_step,steps,images_per_s");
  int rows = 0;
  for (std::string line; std::getline(csv, line);) ++rows;
  REQUIRE(rows == 12);
}

TEST_CASE("seeds: compare's summary.json passes the schema check", "[app][seeds]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 96, 30);
  const std::string out = d.path() + "/cmp";
  REQUIRE(sh(std::string(MINIDL_APP_PATH) + " --blas-core library compare --data " + d.path() +
             " --seeds 1,2 --steps 8 --eval-every 4 --batch-size 16 --quiet --out " + out + " > " + d.path() + "/o.txt 2>&1") == 0);
  const auto j = read_json(out + "/summary.json");
  minidl::testing::check_experiment_json(j, 4);
  for (const auto& r : j["runs"]) REQUIRE(r["steps_to_measured"] == true);  // evaluated every 4 steps
}

TEST_CASE("seeds: the PyTorch peer writes the same schema as minidl", "[seeds][torch]") {
  if (!have_torch()) {
    WARN("SKIPPED: /usr/bin/python3 has no torch (apt-get install python3-torch); the peer's schema is not checked");
    return;
  }
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 96, 30);
  const std::string peer = "/usr/bin/python3 " MINIDL_SOURCE_DIR "/scripts/pytorch_peer.py";
  REQUIRE(sh(peer + " compare --data " + d.path() + " --seeds 2 --steps 8 --eval-every 4 --batch-size 16 --threads 1 --quiet --out " +
             d.path() + "/pc > " + d.path() + "/o.txt 2>&1") == 0);
  const auto c = read_json(d.path() + "/pc/summary.json");
  minidl::testing::check_experiment_json(c, 4);
  REQUIRE(c["arms"].size() == 2);
  REQUIRE(sh(peer + " sweep --data " + d.path() + " --seeds 0,5 --lrs 0.1,2 --steps 5 --batch-size 16 --threads 1 --quiet --out " +
             d.path() + "/ps > " + d.path() + "/o.txt 2>&1") == 0);
  const auto s = read_json(d.path() + "/ps/sweep.json");
  minidl::testing::check_experiment_json(s, 8);
  REQUIRE(s["seeds"] == nlohmann::json::array({0, 5}));
  // The CSV files have minidl's columns, so plot.py draws both
  std::ifstream csv(d.path() + "/pc/curves.csv");
  std::string header;
  std::getline(csv, header);
  REQUIRE(header == "arm,seed,step,epoch,images,train_loss,train_acc,test_loss,test_acc,lr,seconds");
}
