package policy

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a policy: bad TOML syntax, an unknown key, a value
// of the wrong type or a value that fails validation. Its message names the
// file, the line (and, for syntax errors, the column) and the key:
//
//	policy.toml:12: rule[1].threshold: must be > 0, got 0
//
// Parse and Load return every problem they find, as one *Error or as an
// errors.Join of several in file order; errors.As(err, &*Error) finds the
// first. The CLI maps it to "bad input".
type Error struct {
	// File is the file name given to Parse or Load ("<embedded default>" for
	// the built-in policy).
	File string
	// Line is the 1-based line of the key, or 0 when unknown (for example for
	// a policy built in Go and checked with Validate).
	Line int
	// Col is the 1-based column of a syntax error, or 0.
	Col int
	// Key is the dotted key path, with array indices: "rule[1].threshold",
	// "allow.addresses[0]". Empty for syntax errors that have none.
	Key string
	// Msg says what is wrong and, where it helps, what was found.
	Msg string
	// Err is the underlying error, if any (for example the os error of Load).
	Err error
}

// Error renders "file:line[:col]: key: msg".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteString(":" + strconv.Itoa(e.Col))
		}
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// joinErrors sorts errs into file order (unknown lines last), keeps the
// first error per key, and joins them; nil when errs is empty.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	line := func(e *Error) int {
		if e.Line == 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if c := cmp.Compare(line(a), line(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.Col, b.Col)
	})
	seen := make(map[string]bool, len(errs))
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		if e.Key != "" {
			if seen[e.Key] {
				continue
			}
			seen[e.Key] = true
		}
		out = append(out, e)
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
