#include "cli.h"
namespace minidl::app {
Command add_eval_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("eval", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
