package main

import (
	"errors"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
)

// errorKind returns the --json error kind of an exit code.
func errorKind(code int) string {
	switch code {
	case exitUsage:
		return jsondoc.KindUsage
	case exitLocked:
		return jsondoc.KindLocked
	}
	return jsondoc.KindFailure
}

// reportedError is a failure whose JSON document (with its "error") the
// command has written already: Main sets the exit code and prints the
// message on stderr, and writes no second document.
type reportedError struct{ err error }

func (e reportedError) Error() string { return e.err.Error() }
func (e reportedError) Unwrap() error { return e.err }

// isReported reports whether err's JSON document was written.
func isReported(err error) bool {
	var r reportedError
	return errors.As(err, &r)
}
