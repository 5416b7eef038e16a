package upstream

import "time"

// StatusFreshFor is how old the speaker's status file may be and the
// speaker still count as running: it rewrites the file about once a second
// (at every change, and at least every second).
const StatusFreshFor = 5 * time.Second

// Alive reports whether r says a speaker is running at now: a status file
// written less than StatusFreshFor ago. A nil report (no status file) is
// no speaker.
func (r *StatusReport) Alive(now time.Time) bool {
	return r != nil && now.Sub(r.Written) < StatusFreshFor
}
