package policy

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestNamePatterns checks each hand-written name check against the regular
// expression it stands for, on edge cases and random strings.
func TestNamePatterns(t *testing.T) {
	for _, c := range []struct {
		name string
		p    namePattern
		re   string
	}{
		{"rule name", ruleNames, `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`},
		{"nft name", nftNames, `^[A-Za-z][A-Za-z0-9_.-]{0,63}$`},
		{"chain name", chainNames, `^[A-Za-z0-9_][A-Za-z0-9_-]{0,27}$`},
		{"device", deviceNames, `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$`},
		{"crowdsec word", crowdsecWords, `^[A-Za-z0-9_./:-]{1,64}$`},
	} {
		re := regexp.MustCompile(c.re)
		check := func(s string) {
			if got, want := c.p.MatchString(s), re.MatchString(s); got != want {
				t.Errorf("%s: %q: namePattern says %v, %s says %v", c.name, s, got, c.re, want)
			}
		}
		for _, s := range []string{"", "a", "A", "0", "_", ".", "-", ":", "/", " ", "a b", "é", "a\n", "\x00",
			strings.Repeat("a", 14), strings.Repeat("a", 15), strings.Repeat("a", 16), strings.Repeat("a", 27),
			strings.Repeat("a", 28), strings.Repeat("a", 29), strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65)} {
			check(s)
		}
		const alphabet = "aZ09_.-:/ \t\xff+@"
		r := rand.New(rand.NewPCG(1, 2))
		for range 20000 {
			b := make([]byte, r.IntN(70))
			for i := range b {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
			check(string(b))
		}
	}
}
