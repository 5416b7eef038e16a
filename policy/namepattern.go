package policy

import "strings"

// Character sets of namePattern.
const (
	letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	digits  = "0123456789"
)

// namePattern accepts a name of 1 to max bytes whose first byte is in
// first and every other byte in rest: the regular expression
// ^[first][rest]{0,max-1}$, checked by hand because compiling such a
// bounded repetition costs thousands of allocations in the package's
// initialisation, which every synban start (a cron run, `synban version`)
// would pay. namepattern_test.go checks it against the regular expressions.
type namePattern struct {
	first, rest string
	max         int
}

// MatchString reports whether s is such a name.
func (p namePattern) MatchString(s string) bool {
	if len(s) == 0 || len(s) > p.max || strings.IndexByte(p.first, s[0]) < 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if strings.IndexByte(p.rest, s[i]) < 0 {
			return false
		}
	}
	return true
}
