package main

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
)

// Set by the release build (scripts/release.sh) with
// -ldflags "-X main.version=... -X main.commit=... -X main.modified=true";
// empty otherwise, and then buildVersion reads debug.ReadBuildInfo.
var (
	version  string
	commit   string
	modified string
)

// versionInfo is what `synban version` reports.
type versionInfo struct {
	// Version is the release version, the module version of a tagged
	// build, the VCS revision (with "-dirty" for a modified tree), or "dev".
	Version string
	// Commit is the full VCS revision built, "" when unknown.
	Commit string
	// Modified says the tree had uncommitted changes.
	Modified bool
	// Go is the Go release that built the binary.
	Go string
}

// pseudoVersion matches a Go pseudo-version (v0.0.0-20060102150405-abcdef123456),
// which names a commit rather than a release.
var pseudoVersion = regexp.MustCompile(`-(?:0\.)?\d{14}-[0-9a-f]{12}(?:\+dirty)?$`)

// buildVersion returns the binary's version: what the release build set
// with -ldflags -X, else the build info Go stamped (module version from a
// tag, vcs.revision and vcs.modified), else "dev".
func buildVersion() versionInfo {
	v := versionInfo{Version: version, Commit: commit, Modified: modified == "true", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v.Commit == "":
				v.Commit = s.Value
			case s.Key == "vcs.modified" && modified == "":
				v.Modified = s.Value == "true"
			}
		}
		if mv := bi.Main.Version; v.Version == "" && mv != "" && mv != "(devel)" && !pseudoVersion.MatchString(mv) {
			v.Version = mv
		}
	}
	if v.Version == "" && v.Commit != "" {
		v.Version = v.Commit[:min(12, len(v.Commit))]
		if v.Modified {
			v.Version += "-dirty"
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

// String is the one line `synban version` prints: version, commit and Go.
func (v versionInfo) String() string {
	s := "synban " + v.Version + " ("
	if v.Commit != "" {
		s += "commit " + v.Commit
		if v.Modified {
			s += ", modified"
		}
		s += "; "
	}
	return s + fmt.Sprintf("%s %s/%s)", v.Go, runtime.GOOS, runtime.GOARCH)
}
