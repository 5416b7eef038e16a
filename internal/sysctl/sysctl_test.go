package sysctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/synban/synban/policy"
)

// fakeRoot writes key=value files under a temporary directory standing in
// for /proc/sys.
func fakeRoot(t *testing.T, kv map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for k, v := range kv {
		path := Path(root, k)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestReadAndApply: Read reports drift, agreement and settings the kernel
// lacks; Apply writes only the drifted ones, reports old and new, goes on
// past a setting it cannot handle, and changes nothing the second time.
func TestReadAndApply(t *testing.T) {
	root := fakeRoot(t, map[string]string{"net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_synack_retries": "2"})
	settings := []policy.SysctlSetting{
		{Name: "tcp_syncookies", Key: "net.ipv4.tcp_syncookies", Value: 1},
		{Name: "tcp_synack_retries", Key: "net.ipv4.tcp_synack_retries", Value: 2},
		{Name: "missing", Key: "net.ipv4.no_such_key", Value: 1},
	}
	st := Read(root, settings)
	if len(st) != 3 || !st[0].Drift || st[0].Current != "0" || st[1].Drift || st[2].Err != "not available on this kernel" {
		t.Fatalf("read %+v", st)
	}
	changed, err := Apply(root, settings)
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.no_such_key") {
		t.Errorf("apply err %v, want the missing key named", err)
	}
	if len(changed) != 1 || changed[0].String() != "net.ipv4.tcp_syncookies: 0 -> 1" {
		t.Errorf("changed %v", changed)
	}
	if b, _ := os.ReadFile(Path(root, "net.ipv4.tcp_syncookies")); string(b) != "1\n" {
		t.Errorf("tcp_syncookies holds %q", b)
	}
	if changed, _ := Apply(root, settings[:2]); len(changed) != 0 {
		t.Errorf("second apply changed %v", changed)
	}
}
