package policy

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// MaxPulled bounds crowdsec.max_pulled: more decisions than any ban set
// synban makes could hold.
const MaxPulled = MaxSetSize

// CrowdSec configures fleet-wide bans through a CrowdSec Local API (LAPI):
// synban pushes its own bans as alerts (a machine login) and enforces the
// fleet's decisions (a bouncer key) in its ban sets. Secrets are read from
// files only, which must not be readable by group or others.
type CrowdSec struct {
	// Enabled turns the integration on (default false).
	Enabled bool `toml:"enabled"`
	// LAPIURL is the LAPI's base URL, http or https, such as
	// "http://10.0.0.1:8080/" (required when enabled).
	LAPIURL string `toml:"lapi_url"`
	// MachineID is the watcher login made with `cscli machines add`
	// (required with push).
	MachineID string `toml:"machine_id"`
	// PasswordFile holds the machine's password (required with push).
	PasswordFile string `toml:"password_file"`
	// BouncerKeyFile holds a bouncer API key made with `cscli bouncers add`
	// (required with pull).
	BouncerKeyFile string `toml:"bouncer_key_file"`
	// Push sends each new or lengthened local ban as an alert with a ban
	// decision of origin "synban", and deletes it on unban (default true).
	Push bool `toml:"push"`
	// Pull enforces the LAPI's active ban decisions in synban's ban sets
	// (default true).
	Pull bool `toml:"pull"`
	// PullOrigins keeps only decisions of these origins ("crowdsec",
	// "cscli", "CAPI", "lists", "synban", ...); empty keeps all.
	PullOrigins []string `toml:"pull_origins"`
	// PullScenariosContaining keeps only decisions whose scenario contains
	// one of these words; empty keeps all.
	PullScenariosContaining []string `toml:"pull_scenarios_containing"`
	// MaxPulled caps the pulled bans enforced in one run, longest first
	// (default 50000; 1..MaxPulled).
	MaxPulled int `toml:"max_pulled"`
	// Timeout bounds each call to the LAPI (default 30s; 1s..10m).
	Timeout Duration `toml:"timeout"`
}

// Pushing reports whether bans are pushed to the LAPI.
func (c *CrowdSec) Pushing() bool { return c.Enabled && c.Push }

// Pulling reports whether the LAPI's decisions are enforced.
func (c *CrowdSec) Pulling() bool { return c.Enabled && c.Pull }

// crowdsecWords is an origin or scenario word the LAPI's filters accept
// (they are joined with commas in a query).
var crowdsecWords = namePattern{first: letters + digits + "_./:-", rest: letters + digits + "_./:-", max: 64}

// maxCrowdSecFilters bounds pull_origins and pull_scenarios_containing.
const maxCrowdSecFilters = 64

// validateCrowdSec checks [crowdsec]. The limits hold whether or not it is
// enabled; what an enabled integration needs (a URL, credentials for what it
// does) only when enabled.
func (d *decoder) validateCrowdSec(p *Policy) {
	c := &p.CrowdSec
	d.between("crowdsec.max_pulled", c.MaxPulled, 1, MaxPulled)
	if t := c.Timeout.Duration; t < time.Second || t > 10*time.Minute {
		d.errorf("crowdsec.timeout", "must be in 1s..10m, got %s", c.Timeout)
	}
	for key, list := range map[string][]string{
		"crowdsec.pull_origins":              c.PullOrigins,
		"crowdsec.pull_scenarios_containing": c.PullScenariosContaining,
	} {
		for _, w := range list {
			if !crowdsecWords.MatchString(w) {
				d.errorf(key, "%q: want 1..64 letters, digits or _ . / : -", w)
			}
		}
	}
	for key, path := range map[string]string{
		"crowdsec.password_file":    c.PasswordFile,
		"crowdsec.bouncer_key_file": c.BouncerKeyFile,
	} {
		if path != "" && !filepath.IsAbs(path) {
			d.errorf(key, "must be an absolute path, got %q", path)
		}
	}
	if c.MachineID != "" && !crowdsecWords.MatchString(c.MachineID) {
		d.errorf("crowdsec.machine_id", "%q: want 1..64 letters, digits or _ . / : -", c.MachineID)
	}
	if c.LAPIURL != "" {
		u, err := url.Parse(c.LAPIURL)
		switch {
		case err != nil:
			d.errorf("crowdsec.lapi_url", "%q is not a URL", c.LAPIURL)
		case u.Scheme != "http" && u.Scheme != "https":
			d.errorf("crowdsec.lapi_url", "%q: scheme must be http or https", c.LAPIURL)
		case u.Host == "":
			d.errorf("crowdsec.lapi_url", "%q: no host", c.LAPIURL)
		case u.User != nil:
			d.errorf("crowdsec.lapi_url", "credentials belong in password_file and bouncer_key_file, not in the URL")
		case u.RawQuery != "" || u.Fragment != "" || strings.ContainsFunc(c.LAPIURL, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			d.errorf("crowdsec.lapi_url", "%q: no query, fragment, spaces or control characters allowed", c.LAPIURL)
		}
	}
	if !c.Enabled {
		return
	}
	if c.LAPIURL == "" {
		d.errorf("crowdsec.lapi_url", "required when crowdsec.enabled is true")
	}
	if !c.Push && !c.Pull {
		d.errorf("crowdsec.enabled", "true with push and pull both false does nothing; set one or disable [crowdsec]")
	}
	if c.Push {
		if c.MachineID == "" {
			d.errorf("crowdsec.machine_id", "required with crowdsec.push (cscli machines add)")
		}
		if c.PasswordFile == "" {
			d.errorf("crowdsec.password_file", "required with crowdsec.push")
		}
	}
	if c.Pull && c.BouncerKeyFile == "" {
		d.errorf("crowdsec.bouncer_key_file", "required with crowdsec.pull (cscli bouncers add)")
	}
}
