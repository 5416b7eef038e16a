package main

import (
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	dropBegin, dropEnd := sectionMarkers("drop")
	if dropBegin != "<!-- bench -drop: begin -->" || dropEnd != "<!-- bench -drop: end -->" {
		t.Fatalf("drop markers %q %q changed: BENCHMARKS.md carries them", dropBegin, dropEnd)
	}
	sec := "## Drop cost\n\nrows\n"
	// Appended to a file without the section, kept apart by a blank line.
	got := splice("# synban benchmarks\n\ntables\n", "drop", sec)
	want := "# synban benchmarks\n\ntables\n\n" + dropBegin + "\n" + sec + dropEnd + "\n"
	if got != want {
		t.Fatalf("append:\n%q\nwant\n%q", got, want)
	}
	if markedSection(got, "drop") != sec {
		t.Errorf("markedSection = %q, want %q", markedSection(got, "drop"), sec)
	}
	// Replaced in place, the rest kept.
	again := splice(got+"\n## After\n", "drop", "## Drop cost\n\nnew rows\n")
	if !strings.Contains(again, "new rows") || strings.Contains(again, "\nrows\n") || !strings.HasSuffix(again, "## After\n") ||
		!strings.HasPrefix(again, "# synban benchmarks\n\ntables\n") || strings.Count(again, dropBegin) != 1 {
		t.Errorf("replace:\n%s", again)
	}
	// Another scenario's section goes between its own markers and leaves
	// the drop section alone; replacing it twice keeps one copy.
	pass := splice(again, "pass", "## One pass\n\nold\n")
	pass = splice(pass, "pass", "## One pass\n\nnew\n")
	if markedSection(pass, "drop") != "## Drop cost\n\nnew rows\n" || markedSection(pass, "pass") != "## One pass\n\nnew\n" ||
		strings.Contains(pass, "old") || !strings.Contains(pass, "## After\n") {
		t.Errorf("two sections:\n%s", pass)
	}
	if markedSection("no markers", "drop") != "" {
		t.Error("markedSection of a file without markers is not empty")
	}
}

func TestTrafgenConf(t *testing.T) {
	for c, want := range map[int][]string{
		caseOne:     {"saddr=10.100.0.1,"},
		caseMany:    {"saddr[2]=drnd(0, 38)", "saddr[1]=drnd(160, 163)"},
		caseSpoofed: {"saddr=10.202.0.0, saddr[2:2]=drnd()"},
	} {
		conf := trafgenConf(c, "02:00:00:00:00:01")
		for _, w := range want {
			if !strings.Contains(conf, w) || !strings.Contains(conf, "da=02:00:00:00:00:01") || !strings.Contains(conf, "dp=80") {
				t.Errorf("case %d: %q lacks %q", c, conf, w)
			}
		}
	}
	// The flood of case (b) stays inside its bans: /32s up to 10.100.38.255
	// (banAddr 0..9983) and the /24s 10.160-163.0-249.
	bans := caseBans(caseMany)
	if len(bans) != 11000 || bans[38*256+255].String() != "10.100.38.255/32" || bans[10999].String() != "10.163.249.0/24" {
		t.Errorf("case (b) bans: %d, [9983] %v, last %v", len(bans), bans[38*256+255], bans[len(bans)-1])
	}
}
