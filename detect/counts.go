package detect

import (
	"slices"

	"github.com/synban/synban/policy"
)

// Counts reports whether rule r counts connection c, as Analyze counts it:
// c's state is one r's state stands for (syn_recv includes NEW_SYN_RECV;
// any is every state but LISTEN) and, when r lists ports, c's local port
// is one of them. It is for explaining a verdict; Analyze itself counts
// through compiled per-class bitmaps.
func Counts(r *policy.Rule, c *Conn) bool {
	if c.State >= 32 || stateMask(r.State)&(1<<c.State) == 0 {
		return false
	}
	return len(r.Ports) == 0 || slices.Contains(r.Ports, c.Local.Port())
}
