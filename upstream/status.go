package upstream

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/synban/synban/internal/strictjson"
)

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

// LiveAnnouncement is an announcement the speaker holds.
type LiveAnnouncement struct {
	Announcement Announcement  `json:"announcement"`
	Since        time.Time     `json:"since"`
	Confirmed    time.Time     `json:"confirmed"`
	Age          time.Duration `json:"age"`
	// Neighbors says, per neighbor carrying the announcement's family,
	// whether it was sent.
	Neighbors []AnnouncementNeighbor `json:"neighbors"`
}

// AnnouncementNeighbor is one announcement as one neighbor has it.
type AnnouncementNeighbor struct {
	Address string `json:"address"`
	// SessionUp: the session is established.
	SessionUp bool `json:"session_up"`
	// Sent: the route is in the neighbor's adj-rib-out on an established
	// session whose family was negotiated (the speaker has written its
	// UPDATE to the session).
	Sent bool `json:"sent"`
	// Received: the neighbor sent the same route back (a route reflector
	// or route server that reflects it); most routers do not, so false
	// says nothing.
	Received bool `json:"received"`
}

// NeighborStatus is one session's state.
type NeighborStatus struct {
	Address  string   `json:"address"`
	PeerASN  uint32   `json:"peer_asn"`
	State    string   `json:"state"`
	Families []string `json:"families"`
	// Advertised counts, per family, the routes sent on the established
	// session: fewer than announced in a FlowSpec family means the
	// neighbor did not take FlowSpec (Decide's FlowSpecRefused).
	Advertised map[string]uint64 `json:"advertised,omitempty"`
}

// Status is what `synban status` shows of the speaker.
type Status struct {
	Announcements []LiveAnnouncement `json:"announcements"`
	Neighbors     []NeighborStatus   `json:"neighbors"`
	Deferred      int                `json:"deferred"`
}

// StatusFile is where Run publishes the speaker's Status, about once a
// second, for `synban status` (another process) to read.
const StatusFile = "upstream-status.json"

// WriteStatus writes r to dir/StatusFile (with the current StatusVersion)
// by an atomic rename. It is informational and rewritten about once a
// second: not synced.
func WriteStatus(dir string, r StatusReport) error {
	r.Version = StatusVersion
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", StatusFile, err)
	}
	return writeAtomic(dir, StatusFile, append(data, '\n'), false)
}

// StatusVersion is the status file's format version.
const StatusVersion = 1

// StatusReport is the status file's content.
type StatusReport struct {
	Version int       `json:"version"`
	Written time.Time `json:"written"`
	PID     int       `json:"pid"`
	Status
}

// ReadStatus reads dir/StatusFile strictly. A missing file (an error
// wrapping os.ErrNotExist) means no speaker is running on dir.
func ReadStatus(dir string) (StatusReport, error) {
	path := filepath.Join(dir, StatusFile)
	data, err := readBounded(path)
	if err != nil {
		return StatusReport{}, err
	}
	var r StatusReport
	if err := strictjson.Decode(data, &r); err != nil {
		return StatusReport{}, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != StatusVersion {
		return StatusReport{}, fmt.Errorf("%s: version %d, want %d", path, r.Version, StatusVersion)
	}
	return r, nil
}
