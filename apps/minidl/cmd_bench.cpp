#include "cli.h"
namespace minidl::app {
Command add_bench_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("bench", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
