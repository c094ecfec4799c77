// minidl: train and compare MNIST models with and without batch normalization.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "blas_core.h"
#include "cli.h"
#include "minidl/distributed.h"
#include "minidl/error.h"
#include "minidl/kernels/dispatch.h"

namespace {
// Under mpirun, ranks other than 0 print nothing (their stdout and stderr go to /dev/null); an
// error on any rank is written to the job's stderr through this saved descriptor, naming the rank.
int g_error_fd = STDERR_FILENO;

void report(const std::string& message) {
  std::string line = "minidl";
  if (minidl::dist::size() > 1) line += " (rank " + std::to_string(minidl::dist::rank()) + " of " + std::to_string(minidl::dist::size()) + ")";
  line += ": " + message + "\n";
  std::cout.flush();
  std::cerr.flush();
  if (::write(g_error_fd, line.data(), line.size()) < 0) std::perror("minidl");
}

int run(int argc, char** argv);
}  // namespace

int main(int argc, char** argv) {
  // Under a file-size limit (ulimit -f) a write past it then fails with EFBIG, which the atomic
  // writers report (exit 5, the previous file kept), instead of SIGXFSZ killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  // First: it may re-execute the process (to pick OpenBLAS's kernels), which must happen before
  // MPI is initialised.
  minidl::app::select_blas_core(argc, argv);
  try {
    minidl::dist::init(&argc, &argv);
  } catch (const minidl::Error& e) {
    report(e.what());
    return minidl::app::kExitUsage;
  }
  if (minidl::dist::rank() != 0) {
    g_error_fd = ::dup(STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDOUT_FILENO);
      ::dup2(null_fd, STDERR_FILENO);
      ::close(null_fd);
    }
  }
  const int status = run(argc, argv);
  minidl::dist::finalize();
  return status;
}

namespace {
int run(int argc, char** argv) {
  using namespace minidl::app;
  CLI::App root{"minidl: a small deep-learning framework; trains MNIST CNNs with and without BatchNorm"};
  std::string blas_core = "auto";
  root.add_option("--blas-core", blas_core,
                  "OpenBLAS kernels: auto (fastest the CPU runs), library (OpenBLAS's own choice) or a core name")
      ->capture_default_str();
  root.require_subcommand(1);
  root.set_help_all_flag("--help-all", "Show help for every command");
  std::vector<Command> commands{add_train_command(root),  add_compare_command(root), add_sweep_command(root),
                                add_fig1_command(root),   add_eval_command(root),    add_predict_command(root),
                                add_bench_command(root),  add_study_command(root),
                                add_summary_command(root)};
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
  // An error on one rank would leave the others waiting in a collective: under mpirun the rank
  // reports it and ends the whole job with its exit status (MPI_Abort).
  auto fail = [](int status, const std::string& message) {
    report(message);
    if (minidl::dist::size() > 1) minidl::dist::abort_all(status);
    return status;
  };
  try {
    // A bad MINIDL_ISA (unknown, or a variant this CPU lacks) fails here, before any work.
    (void)minidl::kernels::active_isa();
    for (const Command& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const minidl::DivergedError& e) {
    return fail(kExitDiverged, std::string("training diverged: ") + e.what());
  } catch (const minidl::InputError& e) {
    return fail(kExitBadInput, e.what());
  } catch (const minidl::OutputError& e) {
    return fail(kExitOutput, e.what());
  } catch (const minidl::Error& e) {
    return fail(kExitUsage, e.what());
  } catch (const std::bad_alloc&) {
    return fail(kExitBadInput, "out of memory");
  } catch (const std::exception& e) {
    return fail(kExitUnexpected, std::string("unexpected error: ") + e.what());
  }
  return kExitUsage;
}
}  // namespace
