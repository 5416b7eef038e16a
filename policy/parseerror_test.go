package policy

import (
	"fmt"
	"strings"
	"testing"
)

// wantParseError parses policy as file and fails t unless it is refused with
// an error line "file:line: key: ..." that contains want.
func wantParseError(t *testing.T, file, policy string, line int, key, want string) {
	t.Helper()
	_, err := Parse(file, []byte(policy))
	if err == nil {
		t.Fatalf("accepted:\n%s", policy)
	}
	prefix := fmt.Sprintf("%s:%d: %s: ", file, line, key)
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("error\n%v\nhas no line %q...%q", err, prefix, want)
}
