package jsondoc

import (
	"fmt"
	"strconv"

	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
)

// Sysctl is one managed kernel setting (check): current is null when it
// cannot be read, and error then says why ("" otherwise).
type Sysctl struct {
	Name    string `json:"name"`
	Key     string `json:"key"`
	Want    int    `json:"want"`
	Current *int   `json:"current"`
	Drift   bool   `json:"drift"`
	Error   string `json:"error"`
}

// SysctlsOf is states in the contract, never null.
func SysctlsOf(states []sysctl.State) []Sysctl {
	out := make([]Sysctl, 0, len(states))
	for _, s := range states {
		j := Sysctl{Name: s.Name, Key: s.Key, Want: s.Want, Drift: s.Drift, Error: s.Err}
		if n, err := strconv.Atoi(s.Current); err == nil && s.Err == "" {
			j.Current = &n
		} else if s.Err == "" && s.Current != "" {
			j.Error = fmt.Sprintf("not a number: %q", s.Current)
		}
		out = append(out, j)
	}
	return out
}

// Check is `check --json`; with --online, a refused or unreachable LAPI
// is also its "error" (exit 1).
type Check struct {
	Policy  string   `json:"policy"`
	OK      bool     `json:"ok"`
	Rules   int      `json:"rules"`
	Backend string   `json:"backend"`
	Sysctl  []Sysctl `json:"sysctl"`
	Online  []string `json:"online"`
	Error   *Error   `json:"error,omitempty"`
}

// CheckOf is the check of p: its kernel settings (drift), and with
// --online what the LAPI said (online) or the failure to ask it
// (onlineErr).
func CheckOf(p *policy.Policy, drift []sysctl.State, online []string, onlineErr error) Check {
	doc := Check{Policy: p.Source, OK: onlineErr == nil, Rules: len(p.Rules), Backend: p.Backend,
		Sysctl: SysctlsOf(drift), Online: nonNil(online)}
	if onlineErr != nil {
		doc.Error = &Error{Message: onlineErr.Error(), Kind: KindFailure}
	}
	return doc
}
