package policy

import (
	"reflect"
	"testing"
)

func TestSysctlSettings(t *testing.T) {
	if got := Default().Sysctl.Settings(); len(got) != 0 || Default().Sysctl.Apply {
		t.Fatalf("the default policy manages kernel settings: %+v", got)
	}
	p, err := Parse("sysctl.toml", []byte("[sysctl]\napply = true\nsomaxconn = 8192\ntcp_syncookies = 0\ntcp_synack_retries = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []SysctlSetting{
		{Name: "tcp_syncookies", Key: "net.ipv4.tcp_syncookies", Value: 0},
		{Name: "tcp_synack_retries", Key: "net.ipv4.tcp_synack_retries", Value: 0},
		{Name: "somaxconn", Key: "net.core.somaxconn", Value: 8192},
	}
	if got := p.Sysctl.Settings(); !reflect.DeepEqual(got, want) || !p.Sysctl.Apply {
		t.Fatalf("Settings() = %+v (apply %v), want %+v", got, p.Sysctl.Apply, want)
	}
	// Each parse has its own values.
	if q := Default(); q.Sysctl.Somaxconn != nil {
		t.Fatalf("a parse leaked into Default(): %+v", q.Sysctl)
	}
}

func TestMetricsTextfile(t *testing.T) {
	const path = "/var/lib/node_exporter/textfile_collector/synban.prom"
	p, err := Parse("m.toml", []byte("[metrics]\ntextfile = \""+path+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Metrics.Textfile != path {
		t.Fatalf("Metrics.Textfile = %q, want %q", p.Metrics.Textfile, path)
	}
	if Default().Metrics.Textfile != "" {
		t.Fatalf("metrics on by default: %q", Default().Metrics.Textfile)
	}
}
