package engine

import (
	"errors"
	"strings"
	"testing"
)

// TestParseBanList checks the --from-file format: comments, blank lines,
// IPv4-mapped entries made IPv4, and bad input naming FILE:LINE.
func TestParseBanList(t *testing.T) {
	reqs, err := ParseBanList(strings.NewReader("# blocklist\n192.0.2.7\n\n  2001:db8::/48  # a comment\n::ffff:198.51.100.1\n"), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.Subject.String()+"@"+r.Where)
	}
	if want := "192.0.2.7/32@list.txt:2 2001:db8::/48@list.txt:4 198.51.100.1/32@list.txt:5"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
	for text, want := range map[string]string{
		"192.0.2.1\nnot-an-address\n":     "list.txt:2:",
		"10.0.0.1/8\n":                    "list.txt:1:",
		"# only comments\n\n":             "list.txt: no address or prefix to ban",
		strings.Repeat("1", 70000) + "\n": "list.txt:1: line too long",
		"192.0.2.1\n" + "fe80::1%eth0\n":  "list.txt:2:",
	} {
		_, err := ParseBanList(strings.NewReader(text), "list.txt")
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: error %v, want an InputError containing %q", text, err, want)
		}
	}
}
