// Whole-file reads with clear errors, and atomic writes.
#pragma once

#include <cstdint>
#include <string>

namespace minidl {

// The whole file; throws InputError naming the path when it is missing, unreadable or larger
// than max_bytes.
std::string read_file(const std::string& path, int64_t max_bytes = int64_t{1} << 32);

// Writes bytes to path so that a reader sees either the old file or the whole new one, never
// a part: a temporary file in the same directory is written, flushed, fsync'ed and renamed over
// path, and the directory is fsync'ed. Throws OutputError naming the path and the cause (a full
// disk, a file-size limit) on failure; the temporary file is removed and the old file untouched.
// A process that wants EFBIG rather than death from SIGXFSZ under RLIMIT_FSIZE ignores SIGXFSZ
// (the app does).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Test-only: called after each chunk write_file_atomic writes, with the bytes written so far.
// Lets a test kill a process in the middle of a save. nullptr (the default) disables it.
void set_atomic_write_fault_hook(void (*hook)(int64_t bytes_written));

}  // namespace minidl
