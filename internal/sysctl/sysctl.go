// Package sysctl reads and writes the kernel settings synban manages: the
// policy's [sysctl] table (checked by `synban check`, set by a run when
// sysctl.apply is true) and the settings a spoofed SYN flood wants
// (spoof.apply_sysctl). It is the one place synban writes /proc/sys.
//
// net.* settings belong to the network namespace of the thread that opens
// them: the functions taking netns run in that namespace ("" for the
// caller's own).
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/synban/synban/internal/nsenter"
	"github.com/synban/synban/policy"
)

// Root is where the kernel's settings live.
const Root = "/proc/sys"

// Path is the file of setting key ("net.ipv4.tcp_syncookies") under root.
func Path(root, key string) string {
	return filepath.Join(root, strings.ReplaceAll(key, ".", "/"))
}

// State is one managed kernel setting compared with the kernel.
type State struct {
	Name    string
	Key     string
	Want    int
	Current string
	// Drift is true when the current value differs from Want.
	Drift bool
	// Err says why the current value could not be read.
	Err string
}

// Read reads the current value of each setting under root.
func Read(root string, settings []policy.SysctlSetting) []State {
	out := make([]State, 0, len(settings))
	for _, s := range settings {
		st := State{Name: s.Name, Key: s.Key, Want: s.Value}
		b, err := os.ReadFile(Path(root, s.Key))
		switch {
		case errors.Is(err, os.ErrNotExist):
			st.Err = "not available on this kernel"
		case err != nil:
			st.Err = err.Error()
		default:
			st.Current = strings.TrimSpace(string(b))
			n, err := strconv.Atoi(st.Current)
			st.Drift = err != nil || n != s.Value
		}
		out = append(out, st)
	}
	return out
}

// Change is one setting changed.
type Change struct {
	Key      string
	Old, New string
}

// String is "key: old -> new".
func (c Change) String() string { return fmt.Sprintf("%s: %s -> %s", c.Key, c.Old, c.New) }

// Apply sets the drifted settings under root and returns what it changed.
// It goes on past a setting it cannot write and returns every failure
// joined.
func Apply(root string, settings []policy.SysctlSetting) ([]Change, error) {
	var changed []Change
	var errs []error
	for _, s := range Read(root, settings) {
		if s.Err != "" {
			errs = append(errs, fmt.Errorf("read sysctl %s: %s", s.Key, s.Err))
			continue
		}
		if !s.Drift {
			continue
		}
		want := strconv.Itoa(s.Want)
		if err := os.WriteFile(Path(root, s.Key), []byte(want+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("set sysctl %s=%s: %w", s.Key, want, err))
			continue
		}
		changed = append(changed, Change{Key: s.Key, Old: s.Current, New: want})
	}
	return changed, errors.Join(errs...)
}

// ReadNS reads the current values of keys in the network namespace netns.
// Keys that do not exist are left out.
func ReadNS(netns string, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	err := nsenter.Do(netns, func() error {
		for _, k := range keys {
			b, err := os.ReadFile(Path(Root, k))
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				return fmt.Errorf("read sysctl %s: %w", k, err)
			}
			out[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
	return out, err
}

// Want is a setting to enforce: Key set to Value unless its current value
// is Value or one of Keep.
type Want struct {
	Key, Value string
	Keep       []string
}

// Ensure enforces want in the network namespace netns and returns what it
// changed. It stops at the first setting it cannot read or write.
func Ensure(netns string, want []Want) ([]Change, error) {
	var changed []Change
	err := nsenter.Do(netns, func() error {
		for _, w := range want {
			path := Path(Root, w.Key)
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", w.Key, err)
			}
			old := strings.TrimSpace(string(b))
			if old == w.Value || slices.Contains(w.Keep, old) {
				continue
			}
			if err := os.WriteFile(path, []byte(w.Value+"\n"), 0o644); err != nil {
				return fmt.Errorf("set sysctl %s=%s: %w", w.Key, w.Value, err)
			}
			changed = append(changed, Change{Key: w.Key, Old: old, New: w.Value})
		}
		return nil
	})
	return changed, err
}
