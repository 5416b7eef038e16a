package netnstest

import (
	"fmt"
	"testing"
)

// Report logs a measured line in t's log and prints it on standard output
// as "suite: TestName: line", where CI shows it for passing tests too.
func Report(t testing.TB, suite, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log(msg)
	fmt.Printf("%s: %s: %s\n", suite, t.Name(), msg)
}
