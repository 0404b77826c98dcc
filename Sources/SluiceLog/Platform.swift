// Sluice is built for Linux: the log and the CLI call Glibc directly (fdatasync, pread,
// posix_spawn, getrusage) and read /proc. Elsewhere the build stops here, with that reason,
// rather than at the first missing symbol.
#if !os(Linux)
#error("Sluice builds and runs on Linux only (it uses Glibc and /proc directly); see README.md")
#endif
