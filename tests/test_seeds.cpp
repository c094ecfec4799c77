// Multi-seed experiments: minidl's compare and sweep, and the PyTorch peer, write the same
// schema, and each summary is the summary of its runs.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>

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
// The tEXt chunks of a PNG file: keyword -> text.
std::map<std::string, std::string> png_text_chunks(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, std::string> out;
  REQUIRE(bytes.size() > 8);
  size_t pos = 8;  // after the signature: chunks of length (4, big-endian), type (4), data, CRC (4)
  while (pos + 12 <= bytes.size()) {
    const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[pos + i])); };
    const uint32_t length = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
    const std::string type = bytes.substr(pos + 4, 4);
    if (pos + 12 + length > bytes.size()) break;
    if (type == "tEXt") {
      const std::string data = bytes.substr(pos + 8, length);
      const size_t nul = data.find('\0');
      if (nul != std::string::npos) out[data.substr(0, nul)] = data.substr(nul + 1);
    }
    pos += 12 + length;
  }
  return out;
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
  if (!std::filesystem::exists(out + "/compare.png")) {
    WARN("SKIPPED: no matplotlib, so no compare.png; the figure's provenance is not checked");
    return;
  }
  // The figure says where it came from: the command, this checkout's commit and the CPU.
  const auto text = png_text_chunks(out + "/compare.png");
  REQUIRE(text.count("Source"));
  REQUIRE(text.at("Source").find("plot.py compare") != std::string::npos);
  REQUIRE(text.count("Commit"));
  REQUIRE(!text.at("Commit").empty());
  REQUIRE(text.count("CPU"));
  REQUIRE(text.at("CPU").find("cores") != std::string::npos);
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
