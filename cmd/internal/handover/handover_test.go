package handover

import (
	"encoding/json"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synban/synban/upstream"
)

// memfd returns a memory file holding data, read from its start, as a raw
// descriptor: Receive takes it over and closes it.
func memfd(t *testing.T, data []byte) int {
	t.Helper()
	fd, err := unix.MemfdCreate("handover-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	return fd
}

func lockFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "lock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestReceiveRoundTrip: what Exec would pass arrives whole, secrets and
// all, and the lock descriptor comes back close-on-exec.
func TestReceiveRoundTrip(t *testing.T) {
	cfg := upstream.Config{LocalASN: 64512, RouterID: netip.MustParseAddr("192.0.2.10"), MaxAge: 5 * time.Minute, MaxRules: 20,
		Neighbors: []upstream.Neighbor{{Address: netip.MustParseAddr("192.0.2.1"), PeerASN: 64500, Password: "s3cret",
			Families: []string{upstream.FamilyIPv4FlowSpec}}}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cf, lock := memfd(t, data), lockFile(t)
	if _, err := unix.FcntlInt(lock.Fd(), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	r, err := Receive([]string{"--handover", strconv.Itoa(Version), "--config-fd", strconv.Itoa(cf),
		"--lock-fd", strconv.Itoa(int(lock.Fd())), "--state-dir", "/var/lib/synban", "--log-level", "INFO", "--log-json"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(r.Config)
	if string(got) != string(data) || r.StateDir != "/var/lib/synban" || r.LogLevel != "INFO" || !r.LogJSON {
		t.Errorf("received %s %+v, want %s", got, r, data)
	}
	if r.Config.Neighbors[0].Password != "s3cret" {
		t.Errorf("the neighbor's password did not arrive")
	}
	flags, err := unix.FcntlInt(r.Lock.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("the lock descriptor is not close-on-exec again: flags %#x, %v", flags, err)
	}
}

// TestReceiveRefuses: a speaker started by hand, by another release, or
// with a configuration that is not synban's, says so.
func TestReceiveRefuses(t *testing.T) {
	lock := lockFile(t)
	lfd := strconv.Itoa(int(lock.Fd()))
	for _, c := range []struct {
		name string
		args func() []string
		want string
	}{
		{"by hand", func() []string { return nil }, "synban upstream"},
		{"other release", func() []string {
			return []string{"--handover", "99", "--config-fd", "3", "--lock-fd", lfd, "--state-dir", "/x"}
		}, "different releases"},
		{"no state dir", func() []string {
			return []string{"--handover", strconv.Itoa(Version), "--config-fd", "3", "--lock-fd", lfd}
		}, "not by hand"},
		{"unknown argument", func() []string { return []string{"--policy", "x"} }, `unknown argument "--policy"`},
		{"missing value", func() []string { return []string{"--state-dir"} }, "without a value"},
		{"bad number", func() []string { return []string{"--config-fd", "x"} }, `--config-fd "x"`},
		{"unknown field", func() []string {
			cf := memfd(t, []byte(`{"NoSuchField":1}`))
			return []string{"--handover", strconv.Itoa(Version), "--config-fd", strconv.Itoa(cf), "--lock-fd", lfd, "--state-dir", "/x"}
		}, "NoSuchField"},
		{"oversized", func() []string {
			cf := memfd(t, []byte(strings.Repeat(" ", maxConfig+1)))
			return []string{"--handover", strconv.Itoa(Version), "--config-fd", strconv.Itoa(cf), "--lock-fd", lfd, "--state-dir", "/x"}
		}, "over"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Receive(c.args())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Receive: %v, want an error containing %q", err, c.want)
			}
		})
	}
}
