#include "cli.h"
namespace minidl::app {
Command add_fig1_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("paper-fig1", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
