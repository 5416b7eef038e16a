package strictjson

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct {
		Version int `json:"version"`
	}
	for _, tc := range []struct{ in, err string }{
		{`{"version": 1}`, ""},
		{`{"version": 1, "extra": 2}`, `unknown field "extra"`},
		{"{\"version\": 1}\n{}", "trailing data"},
		{"{\n\"version\": \"one\"\n}", "line 2: "},
		{"{\n\n\"version\": 1,,\n}", "line 3: "},
		{``, "EOF"},
	} {
		var d doc
		err := Decode([]byte(tc.in), &d)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && d.Version != 1:
			t.Errorf("%q: decoded %+v", tc.in, d)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}
