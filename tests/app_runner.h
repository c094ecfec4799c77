// Runs the minidl binary from a test (test helper).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace minidl::testing {

struct AppRun {
  int status;
  std::string out, err;
};

// Runs the app with args (a shell-quoted string) in the library's BLAS core, capturing stdout
// and stderr in files under dir.
inline AppRun run_app(const std::string& args, const std::string& dir) {
  const std::string out = dir + "/stdout.txt", err = dir + "/stderr.txt";
  const std::string cmd = std::string(MINIDL_APP_PATH) + " --blas-core library " + args + " > " + out + " 2> " + err;
  const int raw = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

}  // namespace minidl::testing
