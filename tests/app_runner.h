// Runs the minidl binary from a test (test helper).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace minidl::testing {

struct AppRun {
  int status;
  std::string out, err;
};

// Runs the app with args (a shell-quoted string) in the library's BLAS core, capturing stdout
// and stderr in files under dir; env: variables set for this run only (values shell-safe).
inline AppRun run_app(const std::string& args, const std::string& dir,
                      const std::vector<std::pair<std::string, std::string>>& env = {}) {
  const std::string out = dir + "/stdout.txt", err = dir + "/stderr.txt";
  std::string prefix;
  for (const auto& [k, v] : env) prefix += k + "='" + v + "' ";
  const std::string cmd = prefix + std::string(MINIDL_APP_PATH) + " --blas-core library " + args + " > " + out + " 2> " + err;
  const int raw = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

}  // namespace minidl::testing
