package jsondoc

import (
	"time"

	"github.com/synban/synban/rules"
)

// Ban is `ban --json`: the bans applied (timeouts may be shorter than
// asked: ban.max_duration), and how many subjects of a --from-file list
// were inside another one.
type Ban struct {
	Backend   string     `json:"backend"`
	Requested float64    `json:"requested_seconds"`
	Bans      []BanEntry `json:"bans"`
	Covered   int        `json:"covered"`
}

// BanOf is the bans applied by backend for the duration requested.
func BanOf(backend string, requested time.Duration, bans []rules.Ban, covered int) Ban {
	return Ban{Backend: backend, Requested: secs(requested), Bans: BansOf(bans), Covered: covered}
}
