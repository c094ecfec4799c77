#include "minidl/io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "minidl/error.h"

namespace minidl {

namespace {
void (*g_fault_hook)(int64_t) = nullptr;

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// strerror, plus what the usual causes of a failed write mean for the user.
std::string write_reason(int err) {
  std::string r = std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) r += ": the disk is full";
  if (err == EFBIG) r += ": a file-size limit was reached";
  return r;
}
}  // namespace

void set_atomic_write_fault_hook(void (*hook)(int64_t)) { g_fault_hook = hook; }

std::string read_file(const std::string& path, int64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) throw InputError(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw InputError(path + ": cannot determine the file size");
  if (size > max_bytes)
    throw InputError(detail::concat(path, ": file has ", size, " bytes, more than the ", max_bytes, " expected at most"));
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(bytes.data(), size)) throw InputError(path + ": read failed");
  return bytes;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw OutputError(path + ": cannot create a temporary file beside it (" + write_reason(errno) + ")");
  auto fail = [&](const std::string& what) {
    const std::string reason = write_reason(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    throw OutputError(path + ": " + what + " (" + reason + "); the previous file is untouched");
  };
  ::fchmod(fd, 0644);
  constexpr size_t kChunk = size_t{1} << 16;
  size_t written = 0;
  while (written < bytes.size()) {
    const size_t n = std::min(kChunk, bytes.size() - written);
    const ssize_t w = ::write(fd, bytes.data() + written, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    written += static_cast<size_t>(w);
    if (g_fault_hook) g_fault_hook(static_cast<int64_t>(written));
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::close(fd) != 0) {
    const std::string reason = write_reason(errno);
    ::unlink(tmp.c_str());
    throw OutputError(path + ": close failed (" + reason + "); the previous file is untouched");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = write_reason(errno);
    ::unlink(tmp.c_str());
    throw OutputError(path + ": cannot rename the temporary file into place (" + reason + "); the previous file is untouched");
  }
  // Make the rename itself durable.
  const int dir = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace minidl
