package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/synban/synban/policy"
)

// procSys is where the kernel's settings live. net.* settings there belong
// to the network namespace of the thread that opens them.
const procSys = "/proc/sys"

// sysctlState is one managed kernel setting compared with the kernel.
type sysctlState struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	Want    int    `json:"want"`
	Current string `json:"current,omitempty"`
	// Drift is true when the current value differs from Want.
	Drift bool `json:"drift"`
	// Err says why the current value could not be read.
	Err string `json:"error,omitempty"`
}

func sysctlPath(root, key string) string {
	return filepath.Join(root, strings.ReplaceAll(key, ".", "/"))
}

// readSysctls reads the current value of each setting under root.
func readSysctls(root string, settings []policy.SysctlSetting) []sysctlState {
	out := make([]sysctlState, 0, len(settings))
	for _, s := range settings {
		st := sysctlState{Name: s.Name, Key: s.Key, Want: s.Value}
		b, err := os.ReadFile(sysctlPath(root, s.Key))
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

// writeDrift prints one line per managed setting for `synban check`.
func writeDrift(w io.Writer, p *policy.Policy, states []sysctlState) {
	how := "report only: sysctl.apply = false"
	if p.Sysctl.Apply {
		how = "synban run sets it: sysctl.apply = true"
	}
	for _, s := range states {
		switch {
		case s.Err != "":
			fmt.Fprintf(w, "sysctl %s: cannot read (%s); policy wants %d\n", s.Key, s.Err, s.Want)
		case s.Drift:
			fmt.Fprintf(w, "sysctl %s: drift: %s, policy wants %d (%s)\n", s.Key, s.Current, s.Want, how)
		default:
			fmt.Fprintf(w, "sysctl %s: %s as the policy wants\n", s.Key, s.Current)
		}
	}
}

// sysctlChange is one setting a run changed.
type sysctlChange struct {
	Key      string
	Old, New string
}

// applySysctls sets the policy's drifted settings under root when
// sysctl.apply is true, and returns what it changed. It goes on past a
// setting it cannot write and returns every failure joined.
func applySysctls(root string, p *policy.Policy) ([]sysctlChange, error) {
	if !p.Sysctl.Apply {
		return nil, nil
	}
	var changed []sysctlChange
	var errs []error
	for _, s := range readSysctls(root, p.Sysctl.Settings()) {
		if s.Err != "" {
			errs = append(errs, fmt.Errorf("read sysctl %s: %s", s.Key, s.Err))
			continue
		}
		if !s.Drift {
			continue
		}
		want := strconv.Itoa(s.Want)
		if err := os.WriteFile(sysctlPath(root, s.Key), []byte(want+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("set sysctl %s=%s: %w", s.Key, want, err))
			continue
		}
		changed = append(changed, sysctlChange{Key: s.Key, Old: s.Current, New: want})
	}
	return changed, errors.Join(errs...)
}

// hardenKernel applies [sysctl] for a run and logs every change with its
// old and new value; failures are logged, not fatal: the bans matter more.
// It returns the number of settings changed.
func (a *app) hardenKernel(p *policy.Policy) int {
	changed, err := applySysctls(procSys, p)
	for _, c := range changed {
		a.log.Warn("kernel setting changed (sysctl.apply)", "key", c.Key, "old", c.Old, "new", c.New)
	}
	if err != nil {
		a.log.Error("could not apply the policy's kernel settings", "err", err)
	}
	return len(changed)
}
