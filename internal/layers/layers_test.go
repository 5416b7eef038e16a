package layers

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// forbidden lists, per package, substrings no package in its dependencies
// (as `go list -deps` lists them, tests excluded) may contain.
var forbidden = []struct {
	pkg  string
	deny []string
}{
	{"policy", []string{"gobgp", "grpc", "protobuf", "synban/upstream\x00", "synban/detect", "synban/rules", "synban/engine"}},
	{"rules", []string{"gobgp", "grpc", "protobuf", "ti-mo/conntrack", "synban/detect", "synban/upstream\x00", "synban/engine"}},
	{"detect", []string{"gobgp", "grpc", "protobuf", "synban/upstream\x00", "synban/rules", "synban/engine"}},
	{"state", []string{"gobgp", "grpc", "protobuf", "synban/upstream\x00", "synban/engine"}},
	{"templates", []string{"gobgp", "grpc", "protobuf", "synban/upstream\x00", "synban/engine"}},
	{"upstream/config", []string{"gobgp", "grpc", "protobuf", "netlink"}},
	// The upstream decisions, hand-off and status files: GoBGP only in
	// upstream/speaker.
	{"upstream", []string{"gobgp", "grpc", "synban/upstream/speaker", "synban/engine"}},
	// Every command cron starts: GoBGP, gRPC and protobuf are linked (and
	// initialised) only in cmd/synban-speaker, and the metrics textfile is
	// written without the Prometheus client (issue 24: startup cost).
	{"engine", []string{"gobgp", "grpc", "protobuf", "prometheus", "synban/upstream/speaker"}},
	{"cmd/synban", []string{"gobgp", "grpc", "protobuf", "prometheus", "synban/upstream/speaker"}},
	// The speaker holds its sessions itself on GoBGP's message codec
	// (issue 25: GoBGP's server advertises extended next hop with no way
	// to turn it off): neither GoBGP's server nor gRPC or protobuf.
	{"upstream/speaker", []string{"gobgp/v4/pkg/server", "gobgp/v4/api", "grpc", "protobuf"}},
	{"cmd/synban-speaker", []string{"gobgp/v4/pkg/server", "gobgp/v4/api", "grpc", "protobuf"}},
}

func TestLowPackagesLinkNothingAbove(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to list dependencies with: %v", err)
		}
	}
	for _, f := range forbidden {
		t.Run(strings.ReplaceAll(f.pkg, "/", "_"), func(t *testing.T) {
			cmd := exec.Command(gobin, "list", "-deps", "github.com/synban/synban/"+f.pkg)
			out, err := cmd.Output()
			if err != nil {
				msg := ""
				if ee, ok := err.(*exec.ExitError); ok {
					msg = string(ee.Stderr)
				}
				t.Fatalf("go list -deps %s: %v %s", f.pkg, err, msg)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 3 {
				t.Fatalf("go list -deps %s listed %d packages: %q", f.pkg, len(deps), deps)
			}
			for _, d := range deps {
				for _, bad := range f.deny {
					// A trailing NUL asks for the exact package, not its
					// subpackages (upstream/config is allowed).
					if exact, ok := strings.CutSuffix(bad, "\x00"); ok {
						if strings.HasSuffix(d, exact) {
							t.Errorf("%s links %s", f.pkg, d)
						}
					} else if strings.Contains(d, bad) {
						t.Errorf("%s links %s", f.pkg, d)
					}
				}
			}
		})
	}
}
