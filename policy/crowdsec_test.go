package policy

import (
	"strings"
	"testing"
)

// TestPolicyCrowdSecValid: an enabled [crowdsec] with push and pull decodes
// into the fields the engine reads.
func TestPolicyCrowdSecValid(t *testing.T) {
	p, err := Parse("p.toml", []byte(`
[crowdsec]
enabled = true
lapi_url = "http://[fd00::1]:8080/"
machine_id = "web1"
password_file = "/etc/synban/pw"
bouncer_key_file = "/etc/synban/key"
pull_origins = ["cscli", "synban"]
pull_scenarios_containing = ["ssh"]
max_pulled = 10
timeout = "5s"
`))
	if err != nil {
		t.Fatal(err)
	}
	c := p.CrowdSec
	if !c.Pushing() || !c.Pulling() || c.LAPIURL != "http://[fd00::1]:8080/" || c.MachineID != "web1" ||
		c.PasswordFile != "/etc/synban/pw" || c.BouncerKeyFile != "/etc/synban/key" || c.MaxPulled != 10 ||
		c.Timeout.Seconds() != 5 || len(c.PullOrigins) != 2 || c.PullScenariosContaining[0] != "ssh" {
		t.Fatalf("decoded %+v", c)
	}
	if Default().CrowdSec.Pushing() || Default().CrowdSec.Pulling() {
		t.Fatal("the default policy talks to a LAPI")
	}
}

// TestPolicyCrowdSecInvalid: each bad [crowdsec] names its key.
func TestPolicyCrowdSecInvalid(t *testing.T) {
	base := "[crowdsec]\nenabled = true\nlapi_url = \"http://10.0.0.1:8080/\"\nmachine_id = \"m\"\npassword_file = \"/pw\"\nbouncer_key_file = \"/key\"\n"
	for _, c := range []struct{ extra, key, msg string }{
		{"[crowdsec]\nenabled = true\nbouncer_key_file = \"/k\"\npush = false\n", "crowdsec.lapi_url", "required"},
		{strings.Replace(base, "http://10.0.0.1:8080/", "ftp://x/", 1), "crowdsec.lapi_url", "scheme"},
		{strings.Replace(base, "http://10.0.0.1:8080/", "http://u:p@x/", 1), "crowdsec.lapi_url", "credentials"},
		{strings.Replace(base, "\"/pw\"", "\"pw\"", 1), "crowdsec.password_file", "absolute"},
		{strings.Replace(base, "password_file = \"/pw\"\n", "", 1), "crowdsec.password_file", "required with crowdsec.push"},
		{strings.Replace(base, "bouncer_key_file = \"/key\"\n", "", 1), "crowdsec.bouncer_key_file", "required with crowdsec.pull"},
		{strings.Replace(base, "machine_id = \"m\"\n", "", 1), "crowdsec.machine_id", "required"},
		{base + "push = false\npull = false\n", "crowdsec.enabled", "does nothing"},
		{base + "max_pulled = 0\n", "crowdsec.max_pulled", "1.."},
		{base + "timeout = \"0s\"\n", "crowdsec.timeout", "1s..10m"},
		{base + "pull_origins = [\"a,b\"]\n", "crowdsec.pull_origins", "letters"},
		{base + "push = 1\n", "crowdsec.push", "true or false"},
		{base + "nonsense = 1\n", "crowdsec.nonsense", ""},
	} {
		_, err := Parse("p.toml", []byte(c.extra))
		if err == nil {
			t.Errorf("%q: accepted", c.extra)
			continue
		}
		if !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %q does not name %s / %q", c.extra, err, c.key, c.msg)
		}
	}
}
