#include "cli.h"
namespace minidl::app {
Command add_compare_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("compare", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
