package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
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

// Bounds on an Error's Key and Msg: a key or value of a megabyte in the file
// is shown by its start only.
const (
	maxKeyLen = 256
	maxMsgLen = 512
)

// newError returns an Error with key and msg clipped to maxKeyLen and
// maxMsgLen bytes.
func newError(file string, line, col int, key, msg string, err error) *Error {
	return &Error{File: file, Line: line, Col: col, Key: clip(key, maxKeyLen), Msg: clip(msg, maxMsgLen), Err: err}
}

// clip shortens s to at most n bytes plus "…", cutting at a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// maxErrors is how many problems Parse, Load and Validate report; the rest
// are summed up in one last Error, so that a policy with a million bad
// entries gives a readable message, not one of many megabytes.
const maxErrors = 20

// joinErrors sorts errs into file order (unknown lines last), keeps the
// first error per key and the first maxErrors of those, and joins them;
// nil when errs is empty. The problems left out, with dropped more that
// were never made into an Error, are counted in a last Error for file:
// "file: ... and N more problems".
func joinErrors(file string, errs []*Error, dropped int) error {
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
	seen := make(map[string]bool, min(len(errs), 1024))
	out := make([]error, 0, min(len(errs), maxErrors+1))
	more := dropped
	for _, e := range errs {
		if e.Key != "" {
			if seen[e.Key] {
				continue
			}
			seen[e.Key] = true
		}
		if len(out) == maxErrors {
			more++
			continue
		}
		out = append(out, e)
	}
	if more > 0 {
		out = append(out, &Error{File: file, Msg: fmt.Sprintf("... and %d more %s", more, plural(more, "problem"))})
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// plural returns word, with an "s" unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
