package upstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDesiredRoundTrip(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	anns := append(append([]Announcement{}, fsExamples...), rtbh("203.0.113.10/32", "192.0.2.66"))
	want := Confirm(now, anns, DecideState{FlowSpecSince: now, LastFlood: now})
	if err := WriteDesired(dir, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(filepath.Join(dir, DesiredFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := ReadDesired(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(anns) || !got.State.FlowSpecSince.Equal(now) {
		t.Fatalf("got %+v", got)
	}
	for i := range anns {
		if !got.Entries[i].Announcement.Equal(anns[i]) || !got.Entries[i].Confirmed.Equal(now) {
			t.Errorf("entry %d: %s, want %s", i, got.Entries[i].Announcement.CLI(), anns[i].CLI())
		}
	}
	prev := got.Previous()
	if len(prev.Announcements) != len(anns) || !prev.LastFlood.Equal(now) {
		t.Fatalf("previous state %+v", prev)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left files behind: %v", ents)
	}
}

func TestReadDesiredMissingIsEmpty(t *testing.T) {
	d, err := ReadDesired(t.TempDir())
	if err != nil || len(d.Entries) != 0 {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestReadDesiredStrict(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"unknown field": {`{"version":1,"entries":[],"state":{},"extra":1}`, `unknown field "extra"`},
		"wrong version": {`{"version":2,"entries":[]}`, "version 2"},
		"trailing":      {`{"version":1,"entries":[]} {}`, "data after"},
		"bad prefix":    {"{\"version\":1,\n\"entries\":[{\"announcement\":{\"kind\":\"flowspec\",\"destination\":\"300.1.1.1/32\"},\"confirmed\":\"2026-01-01T00:00:00Z\"}]}", "300.1.1.1"},
		"no confirmed":  {`{"version":1,"entries":[{"announcement":{"kind":"flowspec","destination":"203.0.113.1/32"}}]}`, "no confirmed time"},
		"syntax":        {"{\"version\":1,\n\n\"entries\":[}", "line 3"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, DesiredFile), []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadDesired(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), DesiredFile) {
				t.Fatalf("err %v, want it to name the file and say %q", err, c.want)
			}
		})
	}
}

func TestReadDesiredRefusesSymlinkAndHuge(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere.json")
	if err := os.WriteFile(target, []byte(`{"version":1,"entries":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, DesiredFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDesired(dir); err == nil {
		t.Fatal("followed a symlink")
	}
	dir2 := t.TempDir()
	huge := `{"version":1,"entries":[],"state":{}}` + strings.Repeat(" ", maxDesiredSize)
	if err := os.WriteFile(filepath.Join(dir2, DesiredFile), []byte(huge), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDesired(dir2); err == nil || !strings.Contains(err.Error(), "bound") {
		t.Fatalf("huge file: %v", err)
	}
}

func TestWriteDesiredReplacesLeftoverTemp(t *testing.T) {
	dir := t.TempDir()
	// A killed writer's temporary file, and a symlink attack on it.
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, DesiredFile+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := WriteDesired(dir, Confirm(time.Now(), nil, DecideState{})); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDesired(dir); err != nil {
		t.Fatal(err)
	}
}

func TestReadDesiredRefusesWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	if err := WriteDesired(dir, Confirm(time.Now(), fsExamples[:1], DecideState{})); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DesiredFile)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDesired(dir); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("world-writable hand-off file: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 12345, 12345); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadDesired(dir); err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Fatalf("foreign-owned hand-off file: %v", err)
		}
	}
}
