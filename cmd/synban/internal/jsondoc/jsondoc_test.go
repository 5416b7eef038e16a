package jsondoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synban/synban/detect"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/golden"
	"github.com/synban/synban/internal/sysctl"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/backends"
	"github.com/synban/synban/state"
	"github.com/synban/synban/upstream"
)

// now is the fixed clock every document here is dated with.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// checkGolden writes doc and compares it with testdata/NAME.json
// (SYNBAN_UPDATE_GOLDEN=1 rewrites it), then checks the contract's
// invariants on it: one object, "schema" first, no null list.
func checkGolden(t *testing.T, name string, doc any) {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, doc); err != nil {
		t.Fatalf("%s: Write: %v", name, err)
	}
	path := filepath.Join("testdata", name+".json")
	if golden.Update() {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (SYNBAN_UPDATE_GOLDEN=1 writes it)", name, err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("%s: output differs from %s:\n%s", name, path, b.String())
	}
	if !strings.HasPrefix(b.String(), "{\n  \"schema\": 1") {
		t.Errorf("%s: \"schema\" is not the first key:\n%s", name, b.String())
	}
	var v map[string]any
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatalf("%s: not one JSON object: %v", name, err)
	}
	if p := nullList(doc); p != "" {
		t.Errorf("%s: list %s encodes as null", name, p)
	}
}

// nullList returns the path of a nil slice in v's encoding, "" when none:
// lists are never null. It walks the document through its own encoding.
func nullList(doc any) string {
	raw, _ := json.Marshal(doc)
	var v any
	_ = json.Unmarshal(raw, &v)
	var walk func(v any, at string) string
	walk = func(v any, at string) string {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if e == nil && listKey(k) {
					return at + "." + k
				}
				if p := walk(e, at+"."+k); p != "" {
					return p
				}
			}
		case []any:
			for _, e := range x {
				if p := walk(e, at+"[]"); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(v, "")
}

// listKey: keys that are lists wherever they appear ("spared" and
// "omitted" are objects or null in explain, so they are not here).
func listKey(k string) bool {
	switch k {
	case "verdicts", "bans", "advice", "evidence", "rows", "moves", "sources", "samplers",
		"sysctl", "online", "counters", "missing", "stored_missing", "notes", "files", "seen", "rules", "inside",
		"summary", "rule_drops", "announcements", "refused", "neighbors", "families", "communities", "ports",
		"counts", "source_counts", "attached", "entries":
		return true
	}
	return false
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func verdict() detect.Verdict {
	return detect.Verdict{Subject: mustPrefix("203.0.113.7/32"), Rule: "syn-flood", State: policy.StateSynRecv,
		Count: 120, Threshold: 50, Hits: 3, Samples: 3, Sources: 1, BanFor: 10 * time.Minute, Reason: "syn-flood: 120 syn_recv > 50"}
}

func class() detect.Classification {
	return detect.Classification{Kind: "real", Why: "few sources, many half-open each", HalfOpenSources: 1, HalfOpenEntries: 120,
		CookiesSent: 40, Advice: []string{"ban the sources"}, CountersSince: 2 * time.Second}
}

func sensor() detect.SensorEvidence {
	return detect.SensorEvidence{Available: true, Table: "inet synban", Counted: true, Window: 2 * time.Second, Since: 10 * time.Second,
		Rows: []detect.SensorRow{{Subject: mustPrefix("203.0.113.7/32"), Packets: 900, InWindow: 300, SinceLast: 900, Rate: 150}}}
}

func TestWriteRefusesNonObjects(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, []int{1}); err == nil || b.Len() != 0 {
		t.Errorf("Write(list) = %v, wrote %q; want an error and nothing", err, b.String())
	}
	if err := Write(&b, struct{}{}); err != nil || b.String() != "{\n  \"schema\": 1\n}\n" {
		t.Errorf("Write(empty object) = %v, %q", err, b.String())
	}
	b.Reset()
	if err := Write(&b, struct {
		S string `json:"s"`
	}{"<&>"}); err != nil || !strings.Contains(b.String(), `"s": "<&>"`) {
		t.Errorf("Write escapes HTML: %v, %q", err, b.String())
	}
}

func TestErrorDocument(t *testing.T) {
	var b bytes.Buffer
	WriteError(&b, "check: bad policy", KindUsage)
	want := "{\n  \"schema\": 1,\n  \"error\": {\n    \"message\": \"check: bad policy\",\n    \"kind\": \"usage\"\n  }\n}\n"
	if b.String() != want {
		t.Errorf("WriteError:\n%s\nwant\n%s", b.String(), want)
	}
}

func TestVersion(t *testing.T) {
	checkGolden(t, "version", Version{Version: "1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true, Go: "go1.24.0"})
}

func TestPolicy(t *testing.T) {
	checkGolden(t, "policy", Policy{Policy: policy.DefaultSource, TOML: "[ban]\nduration = \"10m\"\n"})
}

func TestRender(t *testing.T) {
	checkGolden(t, "render", RenderOf("cron", []File{{Name: "synban", Text: "* * * * * root synban run\n"}}))
}

func TestBanUnbanFlush(t *testing.T) {
	checkGolden(t, "ban", BanOf("nftables", time.Hour, []rules.Ban{{Prefix: mustPrefix("198.51.100.0/24"), Timeout: 30 * time.Minute, Reason: "manual"}}, 2))
	checkGolden(t, "unban", Unban{Backend: "iptables", Requested: 3, Unbanned: 2})
	checkGolden(t, "flush", Flush{Backend: "route"})
}

func TestCheck(t *testing.T) {
	p := &policy.Policy{Source: "policy.toml", Backend: "auto", Rules: make([]policy.Rule, 2)}
	states := []sysctl.State{
		{Name: "syncookies", Key: "net.ipv4.tcp_syncookies", Want: 1, Current: "1"},
		{Name: "synack_retries", Key: "net.ipv4.tcp_synack_retries", Want: 2, Current: "5", Drift: true},
		{Name: "max_syn_backlog", Key: "net.ipv4.tcp_max_syn_backlog", Want: 4096, Current: "many"},
		{Name: "abort_on_overflow", Key: "net.ipv4.tcp_abort_on_overflow", Want: 0, Err: "permission denied"},
	}
	checkGolden(t, "check", CheckOf(p, states, nil, nil))
	checkGolden(t, "check_online_error", CheckOf(p, nil, []string{"lapi: ok"}, errors.New("lapi: 403 forbidden")))
}

func TestRun(t *testing.T) {
	d := &engine.Decision{Class: class(), Report: detect.Report{Verdicts: []detect.Verdict{verdict()}, Sources: 12}, Restored: 1}
	out := &engine.Outcome{Choice: backends.Choice{Name: "nftables", Why: "nft works"}, Decision: d,
		Result: rules.Result{Added: 1, Refreshed: 2, Created: true}, Expired: 3, SysctlChanges: 1}
	checkGolden(t, "run", RunOf(out))
}

func TestPlan(t *testing.T) {
	v := verdict()
	spared := v
	spared.Subject = mustPrefix("192.0.2.1/32")
	d := &engine.Decision{
		Policy: &policy.Policy{Source: "policy.toml"}, Sampler: "sock_diag", SamplerWhy: "netlink works",
		Class: class(), Sensor: sensor(), Restored: 1, Moves: []string{"move input to priority -300"},
		Report: detect.Report{Verdicts: []detect.Verdict{v}, Spared: []detect.Spared{{Verdict: spared, Why: "192.0.2.1/32 is protected (default gateway)"}},
			Sources: 12, Samples: 3, Malformed: 1},
		Ruleset: &rules.Ruleset{Bans: []rules.Ban{{Prefix: v.Subject, Timeout: 10 * time.Minute, Reason: v.Reason}}},
		Omitted: rules.Omitted{{Prefix: mustPrefix("2001:db8::/64"), Why: "over ban.max_bans"}},
		Upstream: &engine.UpstreamPlan{
			Input:    upstream.DecideInput{UplinkBps: 9e8, CapacityBps: 1e9, SaturationRatio: 0.8},
			Decision: upstream.Decision{Reason: "uplink saturated"},
			Announcements: []upstream.Announcement{{Kind: upstream.FlowSpec, Destination: mustPrefix("198.51.100.10/32"),
				Source: v.Subject, Ports: []uint16{443}, Action: upstream.Discard}},
			Refused: []upstream.Refusal{{Announcement: upstream.Announcement{Kind: upstream.RTBH, Destination: mustPrefix("198.51.100.0/24")}, Reason: "wider than /32"}},
			Err:     errors.New("read uplink counters: no such device"),
		},
	}
	checkGolden(t, "plan", PlanOf(d, backends.Choice{Name: "nftables", Why: "assumed", Assumed: true}, "nft", "table inet synban {}\n"))
	d.Upstream, d.Report, d.Ruleset, d.Omitted, d.Moves = nil, detect.Report{}, &rules.Ruleset{}, nil, nil
	checkGolden(t, "plan_quiet", PlanOf(d, backends.Choice{Name: "route", Why: "asked for"}, "route", ""))
}

func TestSample(t *testing.T) {
	w := &engine.Sources{
		Window: &engine.Window{Samplers: []string{"sock_diag"}, Why: "netlink works",
			Result: detect.WindowResult{Samples: make([]detect.Sample, 3), Elapsed: 2 * time.Second,
				Delta: detect.TcpExt{SyncookiesSent: 40, ListenDrops: 2}}},
		Rows:   []engine.SourceRow{{Source: "203.0.113.7", SynRecv: 120, Total: 121, Other: 1}, {Source: "2001:db8::1", Established: 3, Total: 3}},
		Class:  class(),
		Sensor: sensor(),
	}
	checkGolden(t, "sample", SampleOf(w, w.Rows[:1]))
}

func TestStatus(t *testing.T) {
	st := &engine.Status{
		Choice: backends.Choice{Name: "nftables", Why: "nft works"},
		Bans: []rules.ActiveBan{{Ban: rules.Ban{Prefix: mustPrefix("203.0.113.7/32"), Timeout: 10 * time.Minute, Reason: "syn-flood"}, Expires: 9 * time.Minute},
			{Ban: rules.Ban{Prefix: mustPrefix("198.51.100.0/24"), Reason: "manual"}}},
		Counters:    []rules.Counter{{Chain: "input", Rule: "ban_v4", Packets: 10, Bytes: 600}},
		Missing:     []string{"set ban_v6"},
		StateLoaded: true, Stored: 3, Absent: []netip.Prefix{mustPrefix("2001:db8::/64")},
		XDP: &engine.XDPState{Mode: "generic", Attached: []string{"eth0"}, Entries: []engine.XDPDrop{
			{Prefix: mustPrefix("203.0.113.7/32"), Packets: 5, Expires: now.Add(90 * time.Second)},
			{Prefix: mustPrefix("198.51.100.0/24"), Packets: 1}}},
	}
	checkGolden(t, "status", StatusOf(st, nil, false, now))
	checkGolden(t, "status_upstream_down", StatusOf(&engine.Status{}, nil, true, now))
	up := &upstream.StatusReport{Written: now.Add(-2 * time.Second), PID: 42, Status: upstream.Status{
		Deferred:  1,
		Neighbors: []upstream.NeighborStatus{{Address: "192.0.2.254", PeerASN: 64500, State: "established", Families: []string{"ipv4-flowspec"}, Advertised: map[string]uint64{"ipv4-flowspec": 1}}},
		Announcements: []upstream.LiveAnnouncement{{Announcement: upstream.Announcement{Kind: upstream.FlowSpec, Destination: mustPrefix("198.51.100.10/32"), Action: upstream.Discard},
			Age: 30 * time.Second, Neighbors: []upstream.AnnouncementNeighbor{{Address: "192.0.2.254", SessionUp: true, Sent: true}}}},
	}}
	checkGolden(t, "status_upstream", StatusOf(&engine.Status{}, up, false, now))
}

func TestExplain(t *testing.T) {
	v := verdict()
	guard := &policy.Protected{Prefix: mustPrefix("203.0.113.0/24"), Why: "allow list"}
	x := &engine.Explanation{
		Subject: v.Subject, Outcome: "banned", Policy: "policy.toml", Sampler: "sock_diag", SamplerWhy: "netlink works",
		Samples: 3, MinHits: 2, Seen: []engine.SeenCount{{SynRecv: 120, Sources: 1}},
		Rules:  []engine.RuleCheck{{Rule: "syn-flood", State: policy.StateSynRecv, Threshold: 50, Counts: []int{120}, Sources: []int{1}, Peak: 120, Hits: 1, Crossed: true}},
		Prefix: &engine.PrefixCheck{Prefix: mustPrefix("203.0.113.0/24"), Threshold: 500, Guard: guard},
		Class:  class(), Offence: &v, Decided: &v, Escalation: "offence",
		Spared:      &detect.Spared{Verdict: v, Why: "spoofed flood"},
		Planned:     &rules.Ban{Prefix: v.Subject, Timeout: 10 * time.Minute, Reason: v.Reason},
		Omitted:     &rules.Omission{Prefix: v.Subject, Why: "inside 203.0.113.0/24"},
		StateLoaded: true,
		Stored: &state.Ban{Prefix: v.Subject, Since: now.Add(-time.Minute), Until: now.Add(9 * time.Minute), Reason: v.Reason, Rule: "syn-flood",
			Backend: "nftables", Origin: "run"},
		History: &state.Record{Prefix: v.Subject, Bans: 2, LastBan: now.Add(-time.Hour), LastFor: 10 * time.Minute},
		Backend: backends.Choice{Name: "nftables"}, Kernel: &rules.ActiveBan{Ban: rules.Ban{Prefix: v.Subject, Reason: v.Reason}, Expires: 8 * time.Minute},
		Drops: 77, HasDrops: true, Sensor: &sensor().Rows[0], SensorRead: true, Summary: []string{"banned by syn-flood"},
		XDP: &engine.XDPDrop{Prefix: v.Subject, Packets: 3},
	}
	checkGolden(t, "explain", ExplainOf(x, now))
	x.Spared = &detect.Spared{Verdict: v, Why: "protected", By: *guard}
	x.HasDrops, x.XDP, x.Stored.Until = false, nil, time.Time{}
	checkGolden(t, "explain_guarded", ExplainOf(x, now))
	checkGolden(t, "explain_empty", ExplainOf(&engine.Explanation{Subject: v.Subject, Outcome: "not seen", Class: detect.Classification{Kind: "none"}}, now))
}

func TestTop(t *testing.T) {
	drops := uint64(12)
	s := &engine.TopSnapshot{At: now.Add(time.Hour), Sampler: "procfs", Samples: 1, Sources: 2, Class: class(),
		Backend: "nftables", RuleDrops: []string{"input/ban_v4 12"}}
	rows := []engine.TopRow{
		{Subject: "203.0.113.0/24", Prefix: true, SynRecv: 200, Total: 200, Sources: 40, Verdict: "ban", Why: "prefix-flood", Banned: true, BanLeft: 300, Drops: &drops},
		{Subject: "192.0.2.1", Established: 5, Total: 5, Sources: 1, Verdict: "spared", Why: "default gateway"},
	}
	checkGolden(t, "top", TopOf(s, rows))
	checkGolden(t, "top_empty", TopOf(&engine.TopSnapshot{At: now, Class: detect.Classification{Kind: "none"}, BackendErr: "no backend"}, nil))
}
