package lapitest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteConfig checks the options land in config.yaml, every path in it
// is under dir, and the other files and directories are written.
func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	p, err := WriteConfig(dir, ConfigOptions{ListenURI: "[::]:8080", LogLevel: "warning", TrustedIPs: []string{"127.0.0.1", "::1"}})
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, "config.yaml") {
		t.Errorf("path %q, want config.yaml in %s", p, dir)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, want := range []string{
		"\n  log_level: warning\n",
		"\n    log_level: warning\n    listen_uri: \"[::]:8080\"\n",
		"\n    trusted_ips:\n      - 127.0.0.1\n      - ::1\nprometheus:",
		"db_path: " + dir + "/data/crowdsec.db\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.yaml lacks %q:\n%s", want, cfg)
		}
	}
	for _, line := range strings.Split(cfg, "\n") {
		if i := strings.Index(line, ": /"); i >= 0 && !strings.HasPrefix(line[i+2:], dir+"/") && !strings.Contains(line, "plugin_dir") {
			t.Errorf("a path outside %s: %q", dir, line)
		}
	}
	for _, name := range []string{"profiles.yaml", "simulation.yaml", "data", "hub", "notifications"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestWriteConfigDefaults checks the defaults (info, 127.0.0.1 trusted) and
// that a missing listen URI is refused before anything is written.
func TestWriteConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteConfig(dir, ConfigOptions{}); err == nil {
		t.Error("WriteConfig without a listen URI succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused WriteConfig wrote %d entries", len(entries))
	}
	p, err := WriteConfig(dir, ConfigOptions{ListenURI: "127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "    log_level: info\n    listen_uri: \"127.0.0.1:8080\"\n    profiles_path: " + dir + "/profiles.yaml\n    trusted_ips:\n      - 127.0.0.1\nprometheus:"; !strings.Contains(string(b), want) {
		t.Errorf("config.yaml lacks %q:\n%s", want, b)
	}
}
