// minidl: train and compare MNIST models with and without batch normalization.
#include <iostream>

#include "blas_core.h"
#include "cli.h"
#include "minidl/error.h"

int main(int argc, char** argv) {
  using namespace minidl::app;
  select_blas_core(argc, argv);
  CLI::App root{"minidl: a small deep-learning framework; trains MNIST CNNs with and without BatchNorm"};
  std::string blas_core = "auto";
  root.add_option("--blas-core", blas_core,
                  "OpenBLAS kernels: auto (fastest the CPU runs), library (OpenBLAS's own choice) or a core name")
      ->capture_default_str();
  root.require_subcommand(1);
  root.set_help_all_flag("--help-all", "Show help for every command");
  std::vector<Command> commands{add_train_command(root),  add_compare_command(root), add_sweep_command(root),
                                add_fig1_command(root),   add_eval_command(root),    add_predict_command(root),
                                add_bench_command(root),  add_study_command(root)};
  try {
    root.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return root.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return root.exit(e);
  } catch (const CLI::ParseError& e) {
    root.exit(e);  // prints the message naming the flag
    return kExitUsage;
  }
  try {
    for (const Command& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const minidl::DivergedError& e) {
    std::cerr << "minidl: training diverged: " << e.what() << "\n";
    return kExitDiverged;
  } catch (const minidl::InputError& e) {
    std::cerr << "minidl: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const minidl::Error& e) {
    std::cerr << "minidl: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::bad_alloc&) {
    std::cerr << "minidl: out of memory\n";
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "minidl: unexpected error: " << e.what() << "\n";
    return 4;
  }
  return kExitUsage;
}
