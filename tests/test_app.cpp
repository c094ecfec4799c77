// The minidl binary end to end: exit statuses, messages naming the flag or file, and the
// train -> save -> eval -> predict path on tiny synthetic data.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "minidl/data/image.h"
#include "minidl/io/file.h"
#include "minidl/kernels/dispatch.h"
#include "minidl/kernels/peak.h"
#include "minidl/io/safetensors.h"
#include "app_runner.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace {

using Run = minidl::testing::AppRun;
using minidl::testing::run_app;

void write_png(const std::string& path, int w, int h, int channels, const std::vector<unsigned char>& pixels) {
  REQUIRE(stbi_write_png(path.c_str(), w, h, channels, pixels.data(), w * channels) != 0);
}

}  // namespace

TEST_CASE("app: help and usage errors exit 1 naming the flag", "[app]") {
  TempDir d;
  REQUIRE(run_app("--help", d.path()).status == 0);
  Run help = run_app("train --help", d.path());
  REQUIRE(help.status == 0);
  REQUIRE(help.out.find("--bn-impl") != std::string::npos);
  Run r = run_app("train --model resnet", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--model") != std::string::npos);
  r = run_app("train --lr -0.5 --data " + d.path(), d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--lr must be a positive number") != std::string::npos);
  r = run_app("train --epochs 1 --steps 5", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--epochs excludes --steps") != std::string::npos);
  r = run_app("train --batch-size 0", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--batch-size must be at least 1") != std::string::npos);
  r = run_app("train --threads 99999", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--threads must be between 1 and 1024") != std::string::npos);
  r = run_app("frobnicate", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(run_app("bench --batch-size 1", d.path()).status == 1);
}

TEST_CASE("app: missing or corrupt input files exit 2 naming the file", "[app][reliability]") {
  TempDir d;
  Run r = run_app("train --data " + d.path() + "/absent", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find(d.path() + "/absent: data directory does not exist") != std::string::npos);
  minidl::testing::write_synthetic_mnist(d.path(), 64, 16);
  { std::ofstream(d.path() + "/train-images-idx3-ubyte", std::ios::binary) << "garbage"; }
  r = run_app("train --data " + d.path(), d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("train-images-idx3-ubyte") != std::string::npos);
  { std::ofstream(d.path() + "/bad.safetensors", std::ios::binary) << std::string(8, '\xff') << "{}"; }
  r = run_app("eval --checkpoint " + d.path() + "/bad.safetensors --data " + d.path(), d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("bad.safetensors: invalid safetensors file: header length") != std::string::npos);
  r = run_app("predict --checkpoint " + d.path() + "/absent.safetensors " + d.path() + "/x.png", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("absent.safetensors: cannot open") != std::string::npos);
  minidl::testing::write_synthetic_mnist(d.path(), 64, 16);
  r = run_app("train --data " + d.path() + " --batch-size 65", d.path());
  REQUIRE(r.status == 1);
  REQUIRE(r.err.find("--batch-size 65 is larger than the training set (64 images)") != std::string::npos);
}

TEST_CASE("app: train, save, eval --json and predict on synthetic data", "[app]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 320, 100);
  const std::string ckpt = d.path() + "/model.safetensors", log = d.path() + "/log.csv";
  Run r = run_app("train --data " + d.path() + " --bn --act relu --batch-size 32 --epochs 3 --eval-every 10 --save " +
                      ckpt + " --log " + log + " --quiet",
                  d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::ifstream logf(log);
  std::string header;
  std::getline(logf, header);
  REQUIRE(header == "step,epoch,images,train_loss,train_acc,test_loss,test_acc,lr,seconds");
  int rows = 0;
  for (std::string line; std::getline(logf, line);) ++rows;
  REQUIRE(rows == 3);  // 30 steps: evaluations at steps 10 and 20, and at the end
  Run e = run_app("eval --json --checkpoint " + ckpt + " --data " + d.path(), d.path());
  REQUIRE(e.status == 0);
  auto j = nlohmann::json::parse(e.out);
  REQUIRE(j["n"] == 100);
  REQUIRE(j["accuracy"].get<double>() > 0.8);
  REQUIRE(j["confusion"].size() == 10);
  int64_t total = 0;
  for (auto& row : j["confusion"])
    for (auto& v : row) total += v.get<int64_t>();
  REQUIRE(total == 100);
  // --no-fuse evaluates the layers one by one, BN unfolded: the same predictions, the same
  // confusion matrix, the loss to 1e-5.
  Run u = run_app("eval --json --no-fuse --checkpoint " + ckpt + " --data " + d.path(), d.path());
  REQUIRE(u.status == 0);
  auto ju = nlohmann::json::parse(u.out);
  REQUIRE(ju["confusion"] == j["confusion"]);
  REQUIRE(ju["accuracy"] == j["accuracy"]);
  REQUIRE(ju["loss"].get<double>() == Approx(j["loss"].get<double>()).epsilon(1e-5));

  // A synthetic "class 7" image drawn as the training data, dark on light (predict inverts it),
  // larger than 28x28 (predict crops and rescales it).
  minidl::testing::SyntheticSplit one;
  int label = -1;
  for (uint64_t seed = 1; label != 7; ++seed) {
    one = minidl::testing::synthetic_split(1, seed);
    label = one.labels[0];
  }
  std::vector<unsigned char> big(56 * 56);
  for (int y = 0; y < 56; ++y)
    for (int x = 0; x < 56; ++x) big[static_cast<size_t>(y * 56 + x)] = static_cast<unsigned char>(255 - one.pixels[static_cast<size_t>((y / 2) * 28 + x / 2)]);
  write_png(d.path() + "/seven.png", 56, 56, 1, big);
  Run p = run_app("predict --json --checkpoint " + ckpt + " " + d.path() + "/seven.png", d.path());
  INFO(p.err);
  REQUIRE(p.status == 0);
  auto pj = nlohmann::json::parse(p.out);
  REQUIRE(pj["file"] == d.path() + "/seven.png");
  REQUIRE(pj["top"].size() == 3);
  double total_prob = 0;
  for (auto& t : pj["top"]) total_prob += t["prob"].get<double>();
  REQUIRE(total_prob <= 1.0001);
  REQUIRE(pj["top"][0]["prob"].get<double>() >= pj["top"][1]["prob"].get<double>());
}

TEST_CASE("app: predict refuses bad images with a clear message", "[app][reliability]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 64, 16);
  const std::string ckpt = d.path() + "/m.safetensors";
  REQUIRE(run_app("train --data " + d.path() + " --steps 2 --quiet --save " + ckpt, d.path()).status == 0);
  { std::ofstream(d.path() + "/not.png") << "this is text"; }
  Run r = run_app("predict --checkpoint " + ckpt + " " + d.path() + "/not.png", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("not.png: not a readable image") != std::string::npos);
  write_png(d.path() + "/flat.png", 10, 10, 1, std::vector<unsigned char>(100, 255));
  r = run_app("predict --checkpoint " + ckpt + " " + d.path() + "/flat.png", d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("uniform") != std::string::npos);
  // a PNG header declaring 100000 x 100000 pixels: refused before any allocation
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0dIHDR", 8);
  png += std::string("\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x00\x00\x00\x00", 13);
  png += std::string(4, '\0');
  { std::ofstream(d.path() + "/huge.png", std::ios::binary) << png; }
  r = run_app("predict --checkpoint " + ckpt + " " + d.path() + "/huge.png", d.path());
  REQUIRE(r.status == 2);
  REQUIRE((r.err.find("100000x100000") != std::string::npos || r.err.find("not a readable image") != std::string::npos));
  // transparent background, 16-bit: decoded and composited on white
  std::vector<unsigned char> rgba(28 * 28 * 4, 0);
  for (int y = 8; y < 20; ++y)
    for (int x = 12; x < 16; ++x) {
      unsigned char* px = &rgba[static_cast<size_t>((y * 28 + x) * 4)];
      px[0] = px[1] = px[2] = 0;
      px[3] = 255;
    }
  write_png(d.path() + "/alpha.png", 28, 28, 4, rgba);
  r = run_app("predict --json --checkpoint " + ckpt + " " + d.path() + "/alpha.png " + d.path() + "/alpha.png", d.path());
  REQUIRE(r.status == 0);
  REQUIRE(nlohmann::json::parse(r.out).is_array());
}

TEST_CASE("app: a diverging run exits 3 and names the step", "[app][reliability]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 128, 16);
  Run r = run_app("train --data " + d.path() + " --act relu --lr 1e7 --steps 40 --quiet", d.path());
  REQUIRE(r.status == 3);
  REQUIRE(r.err.find("training diverged at step") != std::string::npos);
  // The preset is watched layer by layer like a spec: its first infinite output is conv2's.
  CHECK(r.err.find("the loss is nan; the first layer whose output is not finite: 'conv2'; lr 1e+07") != std::string::npos);
  Run skip = run_app("train --data " + d.path() + " --act relu --lr 1e7 --steps 40 --quiet --on-nonfinite skip-step", d.path());
  CHECK(skip.status == 3);
  CHECK(skip.err.find("warning: step 3 skipped: the loss is nan") != std::string::npos);
  CHECK(skip.err.find("(10 steps in a row were skipped)") != std::string::npos);
  Run bad = run_app("train --data " + d.path() + " --on-nonfinite maybe", d.path());
  CHECK(bad.status == 1);
  CHECK(bad.err.find("--on-nonfinite: expected stop or skip-step, got 'maybe'") != std::string::npos);
}

TEST_CASE("app: Ctrl-C saves a checkpoint and the run resumes from it", "[app][reliability]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 2000, 16);
  const std::string ckpt = d.path() + "/run";
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const std::string cmd = std::string(MINIDL_APP_PATH) + " --blas-core library train --data " + d.path() +
                            " --epochs 50 --eval-every 0 --quiet --checkpoint-every 5 --checkpoint-dir " + ckpt +
                            " > /dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training is under way (its first periodic checkpoint exists: the signal
  // handlers are installed by then), then interrupt.
  for (int i = 0; i < 1200 && !std::ifstream(ckpt + "/trainer.safetensors").good(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(std::ifstream(ckpt + "/trainer.safetensors").good());
  kill(child, SIGINT);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 130);
  REQUIRE(std::ifstream(ckpt + "/model.safetensors").good());
  REQUIRE(std::ifstream(ckpt + "/trainer.safetensors").good());
  const auto state = minidl::load_safetensors(ckpt + "/trainer.safetensors");
  const int64_t step = std::stoll(state.metadata.at("step"));
  REQUIRE(step > 0);
  Run resumed = run_app("train --data " + d.path() + " --steps " + std::to_string(step + 3) +
                            " --eval-every 0 --resume " + ckpt,
                        d.path());
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  REQUIRE(resumed.out.find("steps " + std::to_string(step + 3)) != std::string::npos);
}

TEST_CASE("images: 16-bit, empty and zero-sized images", "[data][image][reliability]") {
  // An 8x8 16-bit grey PNG (light background, dark vertical bar), made with PIL.
  const std::string png16(
      "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x08\x00\x00\x00\x08\x10\x00\x00\x00"
      "\x00\xb1\xf4\x3d\x14\x00\x00\x00\x1e\x49\x44\x41\x54\x78\x9c\x63\x7c\x95\xc0\x80\x02\x98\x18\x18\xb0\x0a\x48\x76"
      "\x48\x76\xe0\x57\x81\x47\x80\x91\xa0\x2d\x00\x51\xb1\x03\xe5\x8a\xcf\x37\x16\x00\x00\x00\x00\x49\x45\x4e\x44\xae"
      "\x42\x60\x82",
      87);
  minidl::GrayImage image = minidl::decode_image(png16, "bar16.png");
  REQUIRE(image.width == 8);
  REQUIRE(image.height == 8);
  REQUIRE(image.pixels[0] > 200.0f);                 // 60000/65535 of white
  REQUIRE(image.pixels[2 * 8 + 3] < 10.0f);          // the bar
  minidl::Tensor x = minidl::mnist_preprocess(image, "bar16.png");
  REQUIRE(x.shape() == minidl::Shape{1, 1, 28, 28});
  // the bar is centred: the centre column is ink (positive after normalisation), the corner is background
  REQUIRE(x.at({0, 0, 14, 14}) > 1.0f);
  REQUIRE(x.at({0, 0, 0, 0}) == Approx(-0.1307f / 0.3081f));
  REQUIRE_THROWS_WITH(minidl::decode_image("", "empty.png"), Catch::Contains("empty.png: empty file"));
  // a PNG header with width 0
  std::string zero = png16.substr(0, 33);
  zero[16] = zero[17] = zero[18] = zero[19] = 0;
  REQUIRE_THROWS_AS(minidl::decode_image(zero, "zero.png"), minidl::InputError);
}

TEST_CASE("app: train --init starts from a checkpoint", "[app]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 320, 100);
  const std::string first = d.path() + "/first.safetensors", second = d.path() + "/second.safetensors";
  REQUIRE(run_app("train --data " + d.path() + " --act relu --batch-size 32 --epochs 2 --quiet --save " + first, d.path()).status == 0);
  // One step with a negligible learning rate from the checkpoint: the model is (almost) the same.
  REQUIRE(run_app("train --data " + d.path() + " --act relu --steps 1 --lr 1e-12 --quiet --init " + first + " --save " + second,
                  d.path()).status == 0);
  auto acc = [&](const std::string& ckpt) {
    Run r = run_app("eval --json --checkpoint " + ckpt + " --data " + d.path(), d.path());
    REQUIRE(r.status == 0);
    return nlohmann::json::parse(r.out)["accuracy"].get<double>();
  };
  const double a = acc(first);
  REQUIRE(a > 0.5);
  REQUIRE(acc(second) == Approx(a).margin(0.011));
  // a checkpoint of another architecture is refused, naming the tensors
  Run r = run_app("train --data " + d.path() + " --model mlp --steps 1 --quiet --init " + first, d.path());
  REQUIRE(r.status == 2);
  REQUIRE(r.err.find("missing tensors") != std::string::npos);
}

TEST_CASE("app: --eval-every epoch evaluates at each epoch's end, the best model kept beside the last", "[app]") {
  TempDir d;
  minidl::testing::write_synthetic_mnist(d.path(), 320, 100);
  const std::string dir = d.path() + "/run", log = d.path() + "/log.csv";
  // 320 images in batches of 32: 10 steps an epoch. A high learning rate without BN makes the
  // curve move, so that the best point need not be the last.
  Run r = run_app("train --data " + d.path() + " --act relu --lr 0.3 --batch-size 32 --epochs 4 --eval-every epoch "
                  "--checkpoint-dir " + dir + " --checkpoint-every 1000 --log " + log + " --quiet",
                  d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::ifstream logf(log);
  std::string line;
  std::getline(logf, line);
  std::vector<int64_t> steps;
  std::vector<double> epochs, accs;
  while (std::getline(logf, line)) {
    std::vector<std::string> cells;
    for (size_t start = 0;;) {
      const size_t comma = line.find(',', start);
      cells.push_back(line.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    steps.push_back(std::stoll(cells[0]));
    epochs.push_back(std::stod(cells[1]));
    accs.push_back(std::stod(cells[6]));
  }
  REQUIRE(steps == std::vector<int64_t>{10, 20, 30, 40});
  REQUIRE(epochs == std::vector<double>{1, 2, 3, 4});
  const size_t best = static_cast<size_t>(std::max_element(accs.begin(), accs.end()) - accs.begin());  // the first maximum
  const auto file = minidl::load_safetensors(dir + "/best.safetensors");
  REQUIRE(file.metadata.at("best_step") == std::to_string(steps[best]));
  REQUIRE(std::stod(file.metadata.at("best_test_acc")) == Approx(accs[best]).epsilon(1e-12));
  REQUIRE_THAT(r.out, Catch::Contains("best: step " + std::to_string(steps[best])));
  // Each file holds its own step's weights: evaluated again, they give their row's accuracy.
  auto accuracy_of = [&](const std::string& ckpt) {
    Run e = run_app("eval --json --checkpoint " + ckpt + " --data " + d.path(), d.path());
    REQUIRE(e.status == 0);
    return nlohmann::json::parse(e.out)["accuracy"].get<double>();
  };
  REQUIRE(accuracy_of(dir + "/best.safetensors") == Approx(accs[best]).epsilon(1e-12));
  REQUIRE(accuracy_of(dir + "/model.safetensors") == Approx(accs.back()).epsilon(1e-12));
  // A bad value names the flag.
  Run bad = run_app("train --data " + d.path() + " --eval-every epochs --quiet", d.path());
  REQUIRE(bad.status == 1);
  REQUIRE_THAT(bad.err, Catch::Contains("--eval-every: expected a number of steps (0: only at the end) or 'epoch', got 'epochs'"));
}

TEST_CASE("app: bench --json reports the FMA peak it measured and the model's share of it", "[app][bench]") {
  TempDir d;
  Run r = run_app("bench --json --steps 2 --repeats 1 --warmup 0 --infer-batch-size 10 --threads 1", d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"isa", "fma_peak_isa", "fma_peak_gflops", "train_pct_of_fma_peak", "infer_pct_of_fma_peak",
                          "sgemm_gflops", "blas_core"})
    REQUIRE(j.contains(key));
  CHECK(j["fma_peak_isa"] == minidl::kernels::fma_peak_isa());
  CHECK(j["fma_peak_gflops"].get<double>() > 0);
  CHECK(j["train_pct_of_fma_peak"].get<double>() ==
        Approx(100 * j["train_gflops"].get<double>() / j["fma_peak_gflops"].get<double>()));
}

TEST_CASE("app: MINIDL_ISA picks the kernel variant bench reports, and a variant the CPU lacks exits 1",
          "[app][bench][dispatch]") {
  TempDir d;
  const std::string bench = "bench --json --steps 1 --repeats 1 --warmup 0 --infer-batch-size 10 --threads 1";
  for (minidl::kernels::Isa isa : minidl::kernels::supported_isas()) {
    const std::string name = minidl::kernels::isa_name(isa);
    Run r = run_app(bench, d.path(), {{"MINIDL_ISA", name}});
    INFO(name << ": " << r.err);
    REQUIRE(r.status == 0);
    CHECK(nlohmann::json::parse(r.out)["isa"] == name);
  }
  Run unknown = run_app(bench, d.path(), {{"MINIDL_ISA", "sse4"}});
  CHECK(unknown.status == 1);
  CHECK_THAT(unknown.err, Catch::Contains("MINIDL_ISA: unknown kernel variant 'sse4' (ref, avx2 or avx512)"));
  if (!minidl::kernels::cpu_supports(minidl::kernels::Isa::Avx512)) {
    Run missing = run_app(bench, d.path(), {{"MINIDL_ISA", "avx512"}});
    CHECK(missing.status == 1);
    CHECK_THAT(missing.err, Catch::Contains("MINIDL_ISA=avx512: this CPU does not run the avx512 kernels"));
  }
}

TEST_CASE("app: bench --input-shape times a spec on images of that shape, and the presets refuse it", "[app][bench]") {
  TempDir d;
  // conv(4,3,pad=1) on 3x12x12: 4*3*9*144 = 15,552 MACs; linear on 4*6*6: 144*5 = 720. Training
  // counts 2 FLOPs per MAC, twice for the first layer (no input gradient), three times after.
  Run r = run_app("bench --json --arch \"conv(4,3,pad=1) relu maxpool(2) flatten linear(5)\" --input-shape 3,12,12 --classes 5 "
                  "--steps 2 --repeats 1 --warmup 0 --infer-batch-size 10 --threads 1",
                  d.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["train_mflop_per_image"].get<double>() == Approx((2.0 * 15552 * 2 + 2.0 * 720 * 3) / 1e6));
  CHECK(j["train_images_per_s"].get<double>() > 0);
  CHECK(j["fused"] == "0:conv+1:relu+2:maxpool (one op)");
  Run preset = run_app("bench --model cnn --input-shape 3,32,32 --steps 1 --repeats 1", d.path());
  CHECK(preset.status == 1);  // bad usage (docs/cli.md "Exit status")
  CHECK(preset.err.find("--input-shape") != std::string::npos);
  Run bad = run_app("bench --arch \"flatten linear(10)\" --input-shape 3,x,4 --steps 1", d.path());
  CHECK(bad.status == 1);
  CHECK(bad.err.find("expected C,H,W") != std::string::npos);
}
