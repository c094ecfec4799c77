#include "cli.h"
namespace minidl::app {
Command add_sweep_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("sweep", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
