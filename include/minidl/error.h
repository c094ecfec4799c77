// minidl's error types. The library reports every bad argument or bad input by throwing one of
// these (never by exiting); the app maps them to exit statuses:
//   Error          -> 1 (bad usage: wrong shape, bad flag value, ...)
//   InputError     -> 2 (a file that is missing, corrupt or does not fit the model)
//   DivergedError  -> 3 (training produced a NaN or infinite loss or weight)
//   OutputError    -> 5 (an output could not be written: disk full, file-size limit, ...)
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace minidl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public Error {
 public:
  using Error::Error;
};

// Writing a checkpoint, log or result failed (ENOSPC, EFBIG, EDQUOT, permissions). Atomic
// writers leave the previous file in place when they throw this.
class OutputError : public Error {
 public:
  using Error::Error;
};

class DivergedError : public Error {
 public:
  DivergedError(const std::string& what, int64_t step) : Error(what), step_(step) {}
  int64_t step() const { return step_; }

 private:
  int64_t step_;
};

// "[2, 3, 4]"
std::string shape_to_string(const std::vector<int64_t>& shape);

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// MINIDL_CHECK(cond, "op: message ", value, ...) throws minidl::Error when cond is false.
#define MINIDL_CHECK(cond, ...)                                            \
  do {                                                                     \
    if (!(cond)) throw ::minidl::Error(::minidl::detail::concat(__VA_ARGS__)); \
  } while (0)

}  // namespace minidl
