// Package golden is the one way synban's tests rewrite their checked-in
// expected files (the rendered nft and iptables goldens under
// testdata/golden, the /proc/net/tcp fixtures under testdata/proc): run the
// tests with SYNBAN_UPDATE_GOLDEN=1, e.g.
//
//	SYNBAN_UPDATE_GOLDEN=1 go test ./templates/ ./detect/
//
// then review the diff. An environment variable, not a test flag, so one
// command line works across packages.
package golden

import "os"

// Env is the environment variable that asks tests to rewrite their
// expected files instead of comparing with them.
const Env = "SYNBAN_UPDATE_GOLDEN"

// Update reports whether this test run rewrites expected files.
func Update() bool { return os.Getenv(Env) == "1" }
