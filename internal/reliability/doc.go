// Package reliability holds synban's reliability suite, as tests only: the
// synban binary killed with SIGKILL at random moments during apply, runs
// racing another process's nftables changes, hostile kernel-table and policy
// inputs, several hundred bad command lines, captures, file kinds, modes,
// owners and planted symlinks given to the binary, a table of a million spoofed sources, and fuzz targets for the
// parsers that have none in their own package. Kernel tests need root and
// work only in network namespaces they create.
//
// Each test prints its counts ("reliability: ...") on standard output, so
// that CI logs show what was tried.
package reliability
