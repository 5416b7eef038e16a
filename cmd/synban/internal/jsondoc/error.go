package jsondoc

import "io"

// Error kinds of the error document.
const (
	KindUsage   = "usage"   // exit 2: bad input
	KindFailure = "failure" // exit 1
	KindLocked  = "locked"  // exit 3
)

// Error is the "error" member of a failed command's document (and of
// check's with --online).
type Error struct {
	Message string `json:"message"`
	Kind    string `json:"kind"`
}

// Failed is the document of a failed command: {"schema":N,"error":{...}}.
type Failed struct {
	Error Error `json:"error"`
}

// WriteError writes the error document of a failed command, of kind
// KindUsage, KindFailure or KindLocked.
func WriteError(w io.Writer, msg, kind string) {
	// A failure to write stdout cannot be reported on it; the caller
	// has the message on stderr already.
	_ = Write(w, Failed{Error{Message: msg, Kind: kind}})
}
