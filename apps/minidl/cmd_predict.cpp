#include "cli.h"
namespace minidl::app {
Command add_predict_command(CLI::App& root) {
  CLI::App* cmd = root.add_subcommand("predict", "todo");
  return {cmd, []() -> int { return 1; }};
}
}  // namespace minidl::app
