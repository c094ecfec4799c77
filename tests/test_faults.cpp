// Faults in the middle of work (issue "faults"): a write that hits a full disk or a file-size
// limit. The app runs as a child process under the fault; the test checks the exit status, the
// message, and that the previous files are byte for byte what they were, with no partial file.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "app_runner.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"

using namespace minidl::testing;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Runs the app with RLIMIT_FSIZE = limit_bytes. Its stdout and stderr go to a pipe (pipes are
// not limited), so the whole message comes back however small the limit.
AppRun run_app_file_limit(const std::string& args, rlim_t limit_bytes) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const std::string cmd = std::string(MINIDL_APP_PATH) + " --blas-core library " + args + " 2>&1";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const rlimit lim{limit_bytes, limit_bytes};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(126);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int raw = 0;
  ::waitpid(pid, &raw, 0);
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, out, out};
}

std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(e.path().filename().string());
  return out;
}

struct Data {
  TempDir dir;
  explicit Data(int n = 300) { write_synthetic_mnist(dir.path(), n, 100); }
  std::string flags() const { return "--data " + dir.path() + " --threads 1 --quiet --eval-every 0 "; }
};

}  // namespace

TEST_CASE("faults: a checkpoint save past a file-size limit exits 5 and keeps the previous checkpoint", "[faults][reliability]") {
  Data data;
  const std::string ckpt = data.dir.path() + "/ckpt";
  const std::string common = "train " + data.flags() + "--model mlp --bn --batch-size 32 --checkpoint-every 2 --checkpoint-dir " + ckpt;
  REQUIRE(run_app(common + " --steps 2", data.dir.path()).status == 0);
  const std::string model = slurp(ckpt + "/model.safetensors"), trainer = slurp(ckpt + "/trainer.safetensors");
  REQUIRE(model.size() > 100000);  // the MLP's weights, larger than the limit below
  // The resumed run's save at step 4 meets a 64 KB limit.
  AppRun r = run_app_file_limit(common + " --steps 6 --resume " + ckpt, 65536);
  INFO(r.err);
  CHECK(r.status == 5);
  CHECK(r.err.find("trainer.safetensors") != std::string::npos);
  CHECK(r.err.find("a file-size limit was reached") != std::string::npos);
  CHECK(r.err.find("the previous file is untouched") != std::string::npos);
  CHECK(slurp(ckpt + "/trainer.safetensors") == trainer);
  CHECK(slurp(ckpt + "/model.safetensors") == model);
  CHECK(leftovers(ckpt).empty());
  // And it still resumes.
  CHECK(run_app(common + " --steps 4 --resume " + ckpt, data.dir.path()).status == 0);
}

TEST_CASE("faults: --out and --log writers past a file-size limit exit 5 and keep what was there", "[faults][reliability]") {
  Data data;
  const std::string out = data.dir.path() + "/out";
  fs::create_directories(out);
  spit(out + "/curves.csv", "previous curves\n");
  spit(out + "/summary.json", "{\"previous\": true}\n");
  AppRun r = run_app_file_limit("compare " + data.flags() + "--steps 2 --seeds 1 --batch-size 32 --out " + out, 40);
  INFO(r.err);
  CHECK(r.status == 5);
  CHECK(r.err.find("curves.csv") != std::string::npos);
  CHECK(r.err.find("a file-size limit was reached") != std::string::npos);
  CHECK(slurp(out + "/curves.csv") == "previous curves\n");
  CHECK(slurp(out + "/summary.json") == "{\"previous\": true}\n");
  CHECK(leftovers(out).empty());
  // The training log is appended as the run goes: a row that does not fit stops the run.
  const std::string log = data.dir.path() + "/log.csv";
  AppRun l = run_app_file_limit("train --data " + data.dir.path() + " --threads 1 --quiet --model mlp --steps 4 --eval-every 1 --batch-size 32 --log " + log, 200);
  INFO(l.err);
  CHECK(l.status == 5);
  CHECK(l.err.find(log + ": writing the log failed") != std::string::npos);
}

TEST_CASE("faults: a checkpoint save on a full disk exits 5 and keeps the previous checkpoint", "[faults][reliability]") {
  // A real ENOSPC from a 1.6 MB tmpfs in a private mount namespace. Needs unprivileged user
  // namespaces (or root); where the machine has none, the file-size limit above stands in.
  if (std::system("unshare -rm true > /dev/null 2>&1") != 0) {
    WARN("skipped: unshare -rm is not allowed here, so no tiny filesystem can be mounted");
    return;
  }
  Data data;
  const std::string d = data.dir.path();
  const std::string common = "train " + data.flags() + "--model mlp --bn --batch-size 32 --checkpoint-every 2 ";
  // The same run's first checkpoint written to the ordinary disk, for comparison.
  REQUIRE(run_app(common + "--steps 2 --checkpoint-dir " + d + "/ref", d).status == 0);
  // model 0.4 MB + trainer 0.8 MB fit once; the second save's temporary file does not.
  const std::string script = "mnt=" + d + "/mnt; mkdir -p $mnt && mount -t tmpfs -o size=1600k minidl-full $mnt || exit 99; " +
                             std::string(MINIDL_APP_PATH) + " --blas-core library " + common + "--steps 6 --checkpoint-dir $mnt/ckpt > " + d +
                             "/full.txt 2>&1; echo $? > " + d + "/status.txt; ls -a $mnt/ckpt > " + d + "/listing.txt; cmp -s $mnt/ckpt/model.safetensors " +
                             d + "/ref/model.safetensors && cmp -s $mnt/ckpt/trainer.safetensors " + d +
                             "/ref/trainer.safetensors; echo $? > " + d + "/same.txt";
  const std::string cmd = "unshare -rm sh -c '" + script + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string msg = slurp(d + "/full.txt");
  INFO(msg);
  CHECK(slurp(d + "/status.txt") == "5\n");
  CHECK(msg.find("No space left on device: the disk is full") != std::string::npos);
  CHECK(msg.find("the previous file is untouched") != std::string::npos);
  CHECK(slurp(d + "/same.txt") == "0\n");  // the step-2 checkpoint, byte for byte
  CHECK(slurp(d + "/listing.txt") == ".\n..\nmodel.safetensors\ntrainer.safetensors\n");
}
