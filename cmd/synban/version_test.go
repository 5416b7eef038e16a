package main

import (
	"runtime"
	"testing"
)

// TestPseudoVersion: a Go pseudo-version names a commit, not a release, so
// buildVersion falls back to the revision for it and keeps a tag's version.
func TestPseudoVersion(t *testing.T) {
	for v, pseudo := range map[string]bool{
		"v0.0.0-20261205212110-97935e16baa3":         true,
		"v0.0.0-20261205212110-97935e16baa3+dirty":   true,
		"v1.2.4-0.20261205212110-97935e16baa3":       true,
		"v1.2.3":                                     false,
		"v1.2.3+dirty":                               false,
		"v2.0.0-rc.1":                                false,
		"v1.2.3-20261205212110-97935e16baa3-garbage": false,
	} {
		if got := pseudoVersion.MatchString(v); got != pseudo {
			t.Errorf("pseudoVersion(%q) = %v, want %v", v, got, pseudo)
		}
	}
}

// TestVersionString: the line `synban version` prints names the version,
// the commit, whether the tree was modified, and the Go release.
func TestVersionString(t *testing.T) {
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, c := range []struct {
		v    versionInfo
		want string
	}{
		{versionInfo{Version: "dev", Go: "go1.26.8"}, "synban dev (go1.26.8 " + plat + ")"},
		{versionInfo{Version: "0.0~git20261205.6c80710", Commit: "6c80710160fd36b799dcbaa74199058688fe9cb4", Go: "go1.26.8"},
			"synban 0.0~git20261205.6c80710 (commit 6c80710160fd36b799dcbaa74199058688fe9cb4; go1.26.8 " + plat + ")"},
		{versionInfo{Version: "6c80710160fd-dirty", Commit: "6c80710160fd36b799dcbaa74199058688fe9cb4", Modified: true, Go: "go1.26.8"},
			"synban 6c80710160fd-dirty (commit 6c80710160fd36b799dcbaa74199058688fe9cb4, modified; go1.26.8 " + plat + ")"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.v, got, c.want)
		}
	}
}
