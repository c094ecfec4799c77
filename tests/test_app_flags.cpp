// The app's architecture flags: one definition, one spelling, on every command that describes
// a model; --arch end to end; eval/predict against a checkpoint's metadata; compare's arms and
// the multi-seed summary.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "app_runner.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

namespace {

using Run = minidl::testing::AppRun;
Run run(const std::string& args, const std::string& dir) { return minidl::testing::run_app(args, dir); }

// The help block of one flag: its line and any continuation lines (more indented, no "-").
// Defaults ("=cnn", "=mlp") are cut: commands may differ in defaults, not in spelling.
std::string flag_block(const std::string& help, const std::string& flag, int& count) {
  std::istringstream in(help);
  std::string line, block;
  bool inside = false;
  count = 0;
  const std::regex start("^\\s+" + flag + "([ ,{]|$).*");
  while (std::getline(in, line)) {
    if (std::regex_match(line, start)) {
      ++count;
      inside = true;
      block += std::regex_replace(line, std::regex("=[a-z0-9]+"), "") + "\n";
    } else if (inside && line.size() > 10 && line.find_first_not_of(' ') > 4 && line[line.find_first_not_of(' ')] != '-') {
      block += line + "\n";
    } else {
      inside = false;
    }
  }
  return block;
}

const char* kCnnBn =
    "conv(16,5,pad=2) bn sigmoid maxpool(2) conv(32,5,pad=2) bn sigmoid maxpool(2) flatten linear(128) bn sigmoid linear(10)";

}  // namespace

TEST_CASE("app: every model command takes the same architecture flags with one spelling", "[app][flags]") {
  TempDir d;
  const std::vector<std::string> commands{"train",         "compare",     "sweep",          "paper-fig1",
                                          "bench",         "eval",        "predict",        "study detached",
                                          "study noisy",   "study ics",   "study landscape", "study init",
                                          "study init-gradient", "study weight-decay", "study depth", "study skipinit"};
  std::map<std::string, std::string> first;
  for (const std::string& cmd : commands) {
    Run h = run(cmd + " --help", d.path());
    REQUIRE(h.status == 0);
    for (const std::string flag : {"--model", "--arch", "--bn,--no-bn", "--bn-impl", "--act"}) {
      INFO(cmd << " " << flag << "\n" << h.out);
      int count = 0;
      const std::string block = flag_block(h.out, flag, count);
      REQUIRE(count == 1);
      if (!first.count(flag)) first[flag] = block;
      REQUIRE(block == first[flag]);  // the same definition: same value type, same description
    }
    INFO(cmd << "\n" << h.out);
    // --bn is a flag (no value), and no other spelling of these options exists
    REQUIRE(h.out.find("--bn TEXT") == std::string::npos);
    for (const char* other : {"--batch-norm", "--no-batchnorm", "--activation", "--spec ", "--architecture"})
      REQUIRE(h.out.find(other) == std::string::npos);
  }
  // --arch replaces the preset flags; contradictions are usage errors naming both
  Run r = run("train --arch 'flatten linear(10)' --model mlp", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--arch replaces --model") != std::string::npos);
  r = run("bench --arch 'flatten linear(10)' --bn", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--arch replaces --bn/--no-bn") != std::string::npos);
  r = run("compare --bn", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("compare trains every model with and without BN; --bn/--no-bn does not apply") != std::string::npos);
  r = run("train --arch 'conv(8,5) bn relu maxpool(2) flatten linear(10' --steps 1", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--arch: spec: column 44: '(' of 'linear' is never closed") != std::string::npos);
  r = run("bench --arch 'conv(8,5) bogus(3) flatten linear(10)'", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("token 2 'bogus(3)' (column 11): unknown layer 'bogus'") != std::string::npos);
}

TEST_CASE("app: eval and predict take the flags as a fallback and refuse contradictions", "[app][flags]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 128, 40);
  const std::string plain = d.path() + "/plain.safetensors", spec = d.path() + "/spec.safetensors";
  REQUIRE(run("train --data " + d.path() + " --steps 3 --batch-size 32 --quiet --save " + plain, d.path()).status == 0);
  // The example: `eval --no-bn` on a model without BN is accepted...
  Run r = run("eval --json --checkpoint " + plain + " --data " + d.path() + " --model cnn --no-bn", d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  // ...and contradicting the checkpoint is refused, naming both sides.
  r = run("eval --checkpoint " + plain + " --data " + d.path() + " --bn", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("metadata says bn=false, the command line --bn") != std::string::npos);
  r = run("eval --checkpoint " + plain + " --data " + d.path() + " --act relu", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("metadata says act=sigmoid, the command line --act relu") != std::string::npos);
  r = run("predict --checkpoint " + plain + " --model mlp " + d.path() + "/none.png", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("the command line --model mlp") != std::string::npos);

  // A spec model trains, saves its spec, and eval rebuilds it without flags.
  const std::string arch = "conv(8,5,pad=2) groupnorm(4) relu maxpool(2) flatten linear(32) layernorm relu linear(10)";
  r = run("train --data " + d.path() + " --arch '" + arch + "' --steps 40 --batch-size 32 --lr 0.1 --quiet --save " + spec,
          d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  r = run("eval --json --checkpoint " + spec + " --data " + d.path(), d.path());
  REQUIRE(r.status == 0);
  const double acc = nlohmann::json::parse(r.out)["accuracy"].get<double>();
  REQUIRE(acc > 0.5);  // 40 steps on the synthetic squares: chance is 0.1
  r = run("eval --json --checkpoint " + spec + " --data " + d.path() + " --arch '" + arch + "'", d.path());
  REQUIRE(r.status == 0);
  REQUIRE(nlohmann::json::parse(r.out)["accuracy"].get<double>() == acc);
  r = run("eval --checkpoint " + spec + " --data " + d.path() + " --arch 'flatten linear(10)'", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("the command line --arch \"flatten linear(10)\"") != std::string::npos);
  r = run("eval --checkpoint " + spec + " --data " + d.path() + " --model cnn", d.path());
  REQUIRE(r.status == 2);
}

TEST_CASE("app: compare --seeds writes every run and a summary that is the summary of those runs", "[app][seeds]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 128, 40);
  const std::string out = d.path() + "/cmp";
  Run r = run("compare --data " + d.path() + " --seeds 0,3,5 --steps 12 --eval-every 4 --batch-size 16 --lr 0.2 --quiet --out " + out,
              d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::ifstream in(out + "/summary.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  REQUIRE(j["runs"].size() == 6);
  for (const char* arm : {"no_bn", "bn"}) {
    std::vector<double> acc, seeds;
    std::vector<double> to90;
    for (const auto& run : j["runs"])
      if (run["arm"] == arm) {
        seeds.push_back(run["seed"].get<double>());
        if (!run["final_test_acc"].is_null()) acc.push_back(run["final_test_acc"].get<double>());
        if (!run["steps_to"]["0.9"].is_null()) to90.push_back(run["steps_to"]["0.9"].get<double>());
        REQUIRE(run["lr"].get<double>() == Approx(0.2));
      }
    REQUIRE(seeds == std::vector<double>{0, 3, 5});
    std::sort(acc.begin(), acc.end());
    std::sort(to90.begin(), to90.end());
    const nlohmann::json* s = nullptr;
    for (const auto& e : j["summary"])
      if (e["arm"] == arm) s = &e;
    REQUIRE(s != nullptr);
    REQUIRE((*s)["n"] == 3);
    REQUIRE((*s)["finished"] == acc.size());
    if (acc.size() == 3) {
      REQUIRE((*s)["final_test_acc"]["median"].get<double>() == acc[1]);
      REQUIRE((*s)["final_test_acc"]["min"].get<double>() == acc[0]);
      REQUIRE((*s)["final_test_acc"]["max"].get<double>() == acc[2]);
      REQUIRE((*s)["final_test_acc"]["mean"].get<double>() == Approx((acc[0] + acc[1] + acc[2]) / 3));
    }
    REQUIRE((*s)["steps_to"]["0.9"]["reached"] == to90.size());
    if (!to90.empty()) REQUIRE((*s)["steps_to"]["0.9"]["min"].get<double>() == to90.front());
  }
  // paired: BN better on k of n, k counted from the runs
  int better = 0;
  for (const auto& a : j["runs"])
    for (const auto& b : j["runs"])
      if (a["arm"] == "bn" && b["arm"] == "no_bn" && a["seed"] == b["seed"])
        better += (a["final_test_acc"].is_null() ? -1.0 : a["final_test_acc"].get<double>()) >
                  (b["final_test_acc"].is_null() ? -1.0 : b["final_test_acc"].get<double>());
  REQUIRE(j["paired"].size() == 1);
  REQUIRE(j["paired"][0]["bn_better_on"] == better);
  REQUIRE(j["paired"][0]["n"] == 3);
  // The CSV has a seed column and one curve per (arm, seed)
  std::ifstream csv(out + "/curves.csv");
  std::string header;
  std::getline(csv, header);
  REQUIRE(header.rfind("arm,seed,step,", 0) == 0);

  // Arms of one's own: names, specs, and refusals
  const std::string ln = "conv(8,5) layernorm sigmoid maxpool(2) flatten linear(10)";
  const std::string gn = "conv(8,5) groupnorm(2) sigmoid maxpool(2) flatten linear(10)";
  r = run("compare --data " + d.path() + " --seeds 1 --steps 4 --batch-size 16 --quiet --out " + out + "2 --arm 'ln=" + ln +
              "' --arm 'gn=" + gn + "' --arm 'bn=" + std::string(kCnnBn) + "'",
          d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::ifstream in2(out + "2/summary.json");
  const nlohmann::json j2 = nlohmann::json::parse(in2);
  REQUIRE(j2["arms"].size() == 3);
  REQUIRE(j2["arms"][1]["model"] == gn);
  REQUIRE(j2["summary"].size() == 3);
  r = run("compare --data " + d.path() + " --arm 'a=" + ln + "'", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("two or more arms") != std::string::npos);
  r = run("compare --data " + d.path() + " --arm 'a=" + ln + "' --arm 'b=conv(8,5) wat'", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--arm b: spec: token 2 'wat'") != std::string::npos);
  r = run("compare --data " + d.path() + " --seeds 0,0", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("repeats a seed") != std::string::npos);
}
