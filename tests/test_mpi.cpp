// Data-parallel training through mpiexec (2 and 3 ranks, oversubscribed on small machines): the
// equalities with one process, replicas, failures and resume. The MPI settings (running as
// root, oversubscription) are set in each command's own environment, never globally.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "app_runner.h"
#include "minidl/io/safetensors.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

using namespace minidl;
using minidl::testing::run_app;

namespace {

bool mpi_available() {
#if defined(MINIDL_TESTS_MPI) && MINIDL_TESTS_MPI
  static const bool ok = std::system(MINIDL_MPIEXEC " --version > /dev/null 2>&1") == 0;
  if (!ok) WARN("SKIPPED: " MINIDL_MPIEXEC " does not run; install openmpi-bin (scripts/deps.sh)");
  return ok;
#else
  WARN("SKIPPED: minidl was built without MPI (install libopenmpi-dev openmpi-bin and reconfigure)");
  return false;
#endif
}

#if defined(MINIDL_TESTS_MPI) && MINIDL_TESTS_MPI
const char* const kMpiexec = MINIDL_MPIEXEC;
#else
const char* const kMpiexec = "mpiexec";
#endif

// The launcher with its settings in this command's environment only.
std::string mpi_prefix(int ranks) {
  return std::string("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 ") +
         kMpiexec + " --oversubscribe -np " + std::to_string(ranks) + " ";
}

// mpiexec -np ranks minidl ARGS, output captured under dir.
testing::AppRun run_mpi(int ranks, const std::string& args, const std::string& dir) {
  const std::string out = dir + "/mpi_stdout.txt", err = dir + "/mpi_stderr.txt";
  const std::string cmd = mpi_prefix(ranks) + MINIDL_APP_PATH + " --blas-core library " + args + " > " + out + " 2> " + err;
  const int raw = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

std::map<std::string, Tensor> tensors_of(const std::string& path) {
  std::map<std::string, Tensor> m;
  for (const NamedTensor& t : load_safetensors(path).tensors) m[t.name] = t.tensor;
  return m;
}

// Every tensor of a equals b's to tol relative to the tensor's largest magnitude; returns the
// largest relative difference seen.
double require_same_model(const std::string& a, const std::string& b, double tol) {
  const auto ta = tensors_of(a), tb = tensors_of(b);
  REQUIRE(ta.size() == tb.size());
  double worst = 0.0;
  for (const auto& [name, x] : ta) {
    INFO("tensor " << name);
    REQUIRE(tb.count(name) == 1);
    const Tensor& y = tb.at(name);
    REQUIRE(x.shape() == y.shape());
    double scale = 1e-12, diff = 0.0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      scale = std::max(scale, std::abs(double(x.data()[i])));
      diff = std::max(diff, std::abs(double(x.data()[i]) - double(y.data()[i])));
    }
    worst = std::max(worst, diff / scale);
    CHECK(diff <= tol * scale);
  }
  return worst;
}

struct Data {
  TempDir dir;
  explicit Data(int n_train, int n_test = 200) { testing::write_synthetic_mnist(dir.path(), n_train, n_test); }
  std::string flags() const { return "--data " + dir.path() + " --threads 1 --quiet --eval-every 0 "; }
};

}  // namespace

TEST_CASE("mpi: --sync-bn on 2 and 3 ranks equals one process with the global batch (MLP, 20 steps, 1e-5)", "[mpi]") {
  if (!mpi_available()) return;
  // 1000 examples: with 3 x 21 the epoch's last global batch holds 55 (ranks get 19, 18, 18),
  // and 20 steps cross it.
  Data data(1000);
  const std::string common = "train " + data.flags() + "--model mlp --bn --lr 0.1 --steps 20 ";
  for (const char* impl : {"fused", "composed"}) {
    for (int ranks : {2, 3}) {
      DYNAMIC_SECTION(impl << ", " << ranks << " ranks") {
        const int64_t per_rank = ranks == 2 ? 32 : 21;
        const std::string one = data.dir.path() + "/one.safetensors", many = data.dir.path() + "/many.safetensors";
        auto r1 = run_app(common + "--bn-impl " + impl + " --batch-size " + std::to_string(per_rank * ranks) +
                              " --save " + one, data.dir.path());
        REQUIRE(r1.status == 0);
        auto rn = run_mpi(ranks, common + "--bn-impl " + impl + " --sync-bn --check-replicas --batch-size " +
                                     std::to_string(per_rank) + " --save " + many, data.dir.path());
        INFO(rn.err);
        REQUIRE(rn.status == 0);
        const double worst = require_same_model(one, many, 1e-5);
        WARN(impl << " SyncBN, " << ranks << " ranks vs one process: largest relative difference " << worst);
      }
    }
  }
}

TEST_CASE("mpi: --sync-bn CNN on 2 ranks equals one process after 2 steps (1e-4), fused and composed", "[mpi]") {
  if (!mpi_available()) return;
  Data data(300);
  for (const char* impl : {"fused", "composed"}) {
    DYNAMIC_SECTION(impl) {
      const std::string common = "train " + data.flags() + "--model cnn --bn --lr 0.1 --steps 2 --bn-impl " + impl + " ";
      const std::string one = data.dir.path() + "/one.safetensors", two = data.dir.path() + "/two.safetensors";
      REQUIRE(run_app(common + "--batch-size 64 --save " + one, data.dir.path()).status == 0);
      auto r = run_mpi(2, common + "--sync-bn --batch-size 32 --save " + two, data.dir.path());
      INFO(r.err);
      REQUIRE(r.status == 0);
      require_same_model(one, two, 1e-4);
    }
  }
}

TEST_CASE("mpi: without BN, 2 and 3 ranks equal one process (MLP 20 steps 1e-5, CNN 2 steps 1e-4)", "[mpi]") {
  if (!mpi_available()) return;
  Data data(1000);
  for (int ranks : {2, 3}) {
    DYNAMIC_SECTION(ranks << " ranks") {
      const std::string one = data.dir.path() + "/one.safetensors", many = data.dir.path() + "/many.safetensors";
      const int64_t per_rank = ranks == 2 ? 32 : 21;
      for (const std::string model : {"--model mlp --steps 20", "--model cnn --steps 2"}) {
        const std::string common = "train " + data.flags() + model + " --no-bn --lr 0.1 ";
        REQUIRE(run_app(common + " --batch-size " + std::to_string(per_rank * ranks) + " --save " + one,
                        data.dir.path()).status == 0);
        auto r = run_mpi(ranks, common + " --check-replicas --batch-size " + std::to_string(per_rank) + " --save " + many,
                         data.dir.path());
        INFO(r.err);
        REQUIRE(r.status == 0);
        require_same_model(one, many, model.find("mlp") != std::string::npos ? 1e-5 : 1e-4);
      }
    }
  }
}

TEST_CASE("mpi: local BN on 2 ranks equals --ghost-batch in one process (running statistics: rank 0's group)", "[mpi]") {
  if (!mpi_available()) return;
  Data data(1000);
  const std::string common = "train " + data.flags() + "--model mlp --bn --lr 0.1 --steps 20 ";
  const std::string ghost = data.dir.path() + "/ghost.safetensors", local = data.dir.path() + "/local.safetensors",
                    each = data.dir.path() + "/each.safetensors";
  REQUIRE(run_app(common + "--batch-size 64 --ghost-batch 32 --ghost-stats first --save " + ghost, data.dir.path()).status == 0);
  auto r = run_mpi(2, common + "--batch-size 32 --check-replicas --save " + local, data.dir.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  require_same_model(ghost, local, 1e-5);
  // The running-statistics rule is what differs from ghost BN's own default (every group in
  // turn): the parameters agree, the running statistics do not.
  REQUIRE(run_app(common + "--batch-size 64 --ghost-batch 32 --save " + each, data.dir.path()).status == 0);
  const auto te = tensors_of(each), tl = tensors_of(local);
  CHECK(std::equal(te.at("fc1.weight").data(), te.at("fc1.weight").data() + te.at("fc1.weight").numel(),
                   tl.at("fc1.weight").data(), [](float a, float b) { return std::abs(a - b) <= 1e-5f * (1 + std::abs(a)); }));
  const Tensor& ve = te.at("bn1.running_var");
  const Tensor& vl = tl.at("bn1.running_var");
  double diff = 0;
  for (int64_t i = 0; i < ve.numel(); ++i) diff = std::max(diff, std::abs(double(ve.data()[i]) - vl.data()[i]));
  CHECK(diff > 1e-3);
  // And local BN differs from SyncBN (the statistics of 32, not 64).
  const std::string sync = data.dir.path() + "/sync.safetensors";
  REQUIRE(run_mpi(2, common + "--batch-size 32 --sync-bn --save " + sync, data.dir.path()).status == 0);
  const auto ts = tensors_of(sync);
  double wdiff = 0;
  for (int64_t i = 0; i < ts.at("fc2.weight").numel(); ++i)
    wdiff = std::max(wdiff, std::abs(double(ts.at("fc2.weight").data()[i]) - tl.at("fc2.weight").data()[i]));
  CHECK(wdiff > 1e-4);
}

TEST_CASE("mpi: a rank with no examples in the last global batch still joins SyncBN (3 ranks, batch of 2)", "[mpi]") {
  if (!mpi_available()) return;
  // 65 examples, global batch 63: step 2 holds 2 examples, rank 2 gets none. BatchNorm2d only
  // (two examples give 2 x 196 values per channel: well conditioned).
  Data data(65);
  const std::string common = "train " + data.flags() + "--arch \"conv(4,5,pad=2) bn relu maxpool(2) flatten linear(10)\" --lr 0.1 --steps 3 ";
  for (const char* impl : {"fused", "composed"}) {
    DYNAMIC_SECTION(impl) {
      const std::string one = data.dir.path() + "/one.safetensors", three = data.dir.path() + "/three.safetensors";
      REQUIRE(run_app(common + "--bn-impl " + impl + " --batch-size 63 --save " + one, data.dir.path()).status == 0);
      auto r = run_mpi(3, common + "--bn-impl " + impl + " --sync-bn --check-replicas --batch-size 21 --save " + three,
                       data.dir.path());
      INFO(r.err);
      REQUIRE(r.status == 0);
      require_same_model(one, three, 1e-4);
    }
  }
}

TEST_CASE("mpi: distributed evaluation reports the one-process accuracy and loss", "[mpi]") {
  if (!mpi_available()) return;
  Data data(300, 333);  // 333 test images: 111 per rank on 3, 167/166 on 2
  const std::string model = data.dir.path() + "/m.safetensors";
  REQUIRE(run_app("train " + data.flags() + "--model cnn --bn --steps 10 --save " + model, data.dir.path()).status == 0);
  auto one = run_app("eval --json --checkpoint " + model + " --data " + data.dir.path() + " --batch-size 50", data.dir.path());
  REQUIRE(one.status == 0);
  const auto j1 = nlohmann::json::parse(one.out);
  for (int ranks : {2, 3}) {
    auto r = run_mpi(ranks, "eval --json --checkpoint " + model + " --data " + data.dir.path() + " --batch-size 50",
                     data.dir.path());
    INFO(r.err);
    REQUIRE(r.status == 0);
    const auto j = nlohmann::json::parse(r.out);  // one JSON object: rank 0 alone prints
    CHECK(j["accuracy"] == j1["accuracy"]);
    CHECK(j["confusion"] == j1["confusion"]);
    CHECK(std::abs(j["loss"].get<double>() - j1["loss"].get<double>()) <= 1e-6 * std::abs(j1["loss"].get<double>()));
  }
}

TEST_CASE("mpi: --check-replicas stops when ranks hold different parameters", "[mpi]") {
  if (!mpi_available()) return;
  Data data(300);
  // MPMD launch: the two ranks get different seeds, so different initial weights.
  const std::string app = std::string(MINIDL_APP_PATH) + " --blas-core library train " + data.flags() +
                          "--model mlp --steps 3 --batch-size 16 --check-replicas";
  const std::string cmd = mpi_prefix(1) + app + " --seed 0 : -np 1 " + app + " --seed 1 > " + data.dir.path() +
                          "/o.txt 2> " + data.dir.path() + "/e.txt";
  const int raw = std::system(cmd.c_str());
  std::ifstream in(data.dir.path() + "/e.txt");
  const std::string err((std::istreambuf_iterator<char>(in)), {});
  INFO(err);
  CHECK((WIFEXITED(raw) && WEXITSTATUS(raw) == 1));
  CHECK(err.find("--check-replicas: after step 1 the parameters of rank 1 differ from rank 0's") != std::string::npos);
}

TEST_CASE("mpi: a failing rank stops every rank with its exit status and one message", "[mpi]") {
  if (!mpi_available()) return;
  Data data(300);
  SECTION("bad input on rank 1 only: exit 2, the message names the rank and the file") {
    const std::string app = std::string(MINIDL_APP_PATH) + " --blas-core library train --threads 1 --quiet --steps 3 ";
    const std::string cmd = mpi_prefix(1) + app + "--data " + data.dir.path() + " : -np 1 " + app + "--data " +
                            data.dir.path() + "/missing > " + data.dir.path() + "/o.txt 2> " + data.dir.path() + "/e.txt";
    const auto t0 = std::chrono::steady_clock::now();
    const int raw = std::system(cmd.c_str());
    std::ifstream in(data.dir.path() + "/e.txt");
    const std::string err((std::istreambuf_iterator<char>(in)), {});
    INFO(err);
    CHECK((WIFEXITED(raw) && WEXITSTATUS(raw) == 2));
    CHECK(err.find("minidl (rank 1 of 2): ") != std::string::npos);
    CHECK(err.find("/missing") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));  // no hang
  }
  SECTION("a non-finite loss: every rank sees the global loss, exit 3, one message") {
    auto r = run_mpi(2, "train " + data.flags() + "--model mlp --act relu --lr 1e10 --steps 5 --batch-size 16", data.dir.path());
    INFO(r.err);
    CHECK(r.status == 3);
    size_t count = 0;
    for (size_t at = r.err.find("training diverged"); at != std::string::npos; at = r.err.find("training diverged", at + 1)) ++count;
    CHECK(count == 1);
  }
}

TEST_CASE("mpi: --resume continues bit for bit with the same world size and names a different one", "[mpi]") {
  if (!mpi_available()) return;
  Data data(500);
  const std::string common = data.flags() + "--model cnn --bn --sync-bn --batch-size 16 ";
  const std::string straight = data.dir.path() + "/straight.safetensors", resumed = data.dir.path() + "/resumed.safetensors",
                    ckpt = data.dir.path() + "/ckpt";
  REQUIRE(run_mpi(2, "train " + common + "--steps 12 --save " + straight, data.dir.path()).status == 0);
  REQUIRE(run_mpi(2, "train " + common + "--steps 6 --checkpoint-dir " + ckpt + " --checkpoint-every 6", data.dir.path()).status == 0);
  auto r = run_mpi(2, "train " + common + "--steps 12 --resume " + ckpt + " --save " + resumed, data.dir.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  require_same_model(straight, resumed, 0.0);
  auto bad = run_mpi(3, "train " + common + "--steps 12 --resume " + ckpt, data.dir.path());
  CHECK(bad.status == 2);
  CHECK(bad.err.find("saved by 2 process(es), this one has 3") != std::string::npos);
}

namespace {
// The rank processes of a job: minidl processes (the command line starts with the app's path,
// the launcher's does not) whose arguments hold `marker`, with their MPI rank from the
// environment the launcher gave them.
std::map<int, long> rank_pids(const std::string& marker) {
  std::map<int, long> out;
  FILE* p = ::popen(("ps -eo pid,args | awk '$2 == \"" + std::string(MINIDL_APP_PATH) + "\" && index($0, \"" + marker +
                     "\") {print $1}'").c_str(), "r");
  if (!p) return out;
  for (long pid; std::fscanf(p, "%ld", &pid) == 1;) {
    std::ifstream env("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
    std::string var;
    while (std::getline(env, var, '\0'))
      if (var.rfind("OMPI_COMM_WORLD_RANK=", 0) == 0) out[std::stoi(var.substr(21))] = pid;
  }
  ::pclose(p);
  return out;
}

bool alive(long pid) {  // and not a zombie
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}
}  // namespace

TEST_CASE("mpi: a rank killed mid-epoch ends every rank within 30 s, named, and the checkpoint resumes bit for bit", "[mpi]") {
  if (!mpi_available()) return;
  Data data(2000);  // 41 steps per epoch at 3 x 16
  const std::string ckpt = data.dir.path() + "/ckpt", err = data.dir.path() + "/e.txt";
  const std::string train = "train " + data.flags() + "--model cnn --bn --sync-bn --batch-size 16 ";
  const std::string cmd = mpi_prefix(3) + MINIDL_APP_PATH + " --blas-core library " + train + "--steps 100000 --checkpoint-dir " +
                          ckpt + " --checkpoint-every 5 > /dev/null 2> " + err;
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait for a checkpoint, then kill rank 2 in the middle of the epoch.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(ckpt + "/trainer.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(std::filesystem::exists(ckpt + "/trainer.safetensors"));
  std::map<int, long> ranks = rank_pids(ckpt);
  REQUIRE(ranks.size() == 3);
  REQUIRE(::kill(static_cast<pid_t>(ranks.at(2)), SIGKILL) == 0);
  const auto killed = std::chrono::steady_clock::now();
  // Every rank and the launcher must end on their own, well within 30 s.
  int raw = 0;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() - killed < std::chrono::seconds(30)) {
    ended = ::waitpid(pid, &raw, WNOHANG) == pid && !alive(ranks.at(0)) && !alive(ranks.at(1));
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  if (!ended) {
    ::kill(-pid, SIGKILL);
    for (const auto& [r, p] : ranks) ::kill(static_cast<pid_t>(p), SIGKILL);
    ::waitpid(pid, &raw, 0);
  }
  std::ifstream in(err);
  const std::string message((std::istreambuf_iterator<char>(in)), {});
  INFO(message << "\nended after " << seconds << " s");
  REQUIRE(ended);
  CHECK((WIFEXITED(raw) && WEXITSTATUS(raw) != 0));
  CHECK(message.find("rank 2") != std::string::npos);
  CHECK(message.find("signal 9") != std::string::npos);
  // The last checkpoint is whole, and a resume from it equals a run that never stopped.
  const Safetensors state = load_safetensors(ckpt + "/trainer.safetensors");
  const int64_t step = std::stoll(state.metadata.at("step"));
  REQUIRE(step % 5 == 0);
  const std::string until = std::to_string(step + 7), straight = data.dir.path() + "/straight.safetensors",
                    resumed = data.dir.path() + "/resumed.safetensors";
  auto a = run_mpi(3, train + "--steps " + until + " --save " + straight, data.dir.path());
  REQUIRE(a.status == 0);
  auto b = run_mpi(3, train + "--steps " + until + " --resume " + ckpt + " --save " + resumed, data.dir.path());
  INFO(b.err);
  REQUIRE(b.status == 0);
  require_same_model(straight, resumed, 0.0);
}
