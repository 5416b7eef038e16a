package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/cmd/internal/handover"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/policy"
	"github.com/synban/synban/upstream"
)

// cmdUpstream runs the upstream BGP speaker until SIGTERM or SIGINT, then
// withdraws everything (waiting, bounded, until the withdrawals are
// written to each established session). It checks the policy and takes
// the speaker's lock (engine.PrepareUpstream), then replaces this process
// with the speaker binary (cmd/internal/handover), so that the GoBGP
// speaker is linked there and not into every synban command.
func cmdUpstream(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("upstream", args); err != nil {
		return err
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	sp, err := a.engine(o).PrepareUpstream(p)
	if err != nil {
		return err
	}
	defer sp.Lock.Close()
	bin, err := handover.Find()
	if err != nil {
		return err
	}
	level, err := logLevel(o)
	if err != nil {
		return usageError{err}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The speaker logs what it announces, withdraws and whether each
	// neighbor got the withdrawals before the Cease.
	return handover.Exec(bin, handover.Request{Config: sp.Config, StateDir: sp.StateDir, Lock: sp.Lock,
		LogLevel: level.String(), LogJSON: o.logJSON})
}

// writeUpstreamPlan prints, after a plan's ruleset, what the run would hand
// the upstream speaker: a summary and one gobgp command per announcement,
// as comments so that the output stays a valid script.
func writeUpstreamPlan(w io.Writer, plan *engine.UpstreamPlan) {
	if plan == nil {
		return
	}
	in := plan.Input
	fmt.Fprintf(w, "\n# upstream (BGP): uplink %s of %s, saturated at %.0f%%: %s\n",
		bps(in.UplinkBps), bps(in.CapacityBps), in.SaturationRatio*100, plan.Decision.Reason)
	if plan.Err != nil {
		fmt.Fprintf(w, "# upstream: %v\n", plan.Err)
	}
	if len(plan.Announcements) == 0 {
		fmt.Fprintln(w, "# upstream: no announcement")
	}
	for _, an := range plan.Announcements {
		fmt.Fprintf(w, "# %s\n", an.CLI())
	}
	for _, r := range plan.Refused {
		fmt.Fprintf(w, "# refused: %s: %s\n", r.Announcement.CLI(), r.Reason)
	}
}

// bps renders a rate in bits per second.
func bps(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", v/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", v)
}

// upstreamStatus reads the speaker's status for `synban status`: nil, nil
// when [upstream] is off and no speaker left a status file.
func upstreamStatus(ctx context.Context, a *app, o *options, p *policy.Policy) (*upstream.StatusReport, error) {
	st, err := a.engine(o).UpstreamStatus(ctx)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &st, nil
}

// speakerAlive reports whether the status file is fresh
// (upstream.StatusReport.Alive).
func speakerAlive(st *upstream.StatusReport, now time.Time) bool { return st.Alive(now) }

// announcementOnNeighbor says in words how one neighbor has an
// announcement.
func announcementOnNeighbor(n upstream.AnnouncementNeighbor) string {
	switch {
	case !n.SessionUp:
		return "session down, not sent"
	case !n.Sent:
		return "session up, not sent (family not negotiated?)"
	case n.Received:
		return "session up, sent, received back"
	}
	return "session up, sent"
}

// writeUpstreamStatus prints the speaker's live announcements with their
// age and, per neighbor, whether each was sent; and each neighbor's
// session state.
func writeUpstreamStatus(w io.Writer, p *policy.Policy, st *upstream.StatusReport, now time.Time) {
	if st == nil {
		if p.Upstream.Enabled {
			fmt.Fprintln(w, "upstream: the speaker is not running (no upstream-status.json in the state directory; start synban upstream)")
		}
		return
	}
	stale := ""
	if !speakerAlive(st, now) {
		stale = " (stale: the speaker rewrites it every second; it may have died)"
	}
	fmt.Fprintf(w, "upstream: speaker pid %d, status of %s ago%s\n", st.PID, now.Sub(st.Written).Round(time.Second), stale)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range st.Neighbors {
		fmt.Fprintf(tw, "  neighbor %s\tAS%d\t%s\t%v\n", n.Address, n.PeerASN, n.State, n.Families)
	}
	tw.Flush()
	fmt.Fprintf(w, "upstream announcements: %d", len(st.Announcements))
	if st.Deferred > 0 {
		fmt.Fprintf(w, " (%d changes deferred by dampening)", st.Deferred)
	}
	fmt.Fprintln(w)
	for _, l := range st.Announcements {
		// The age as the speaker measured it, plus the status file's own age.
		age := l.Age + now.Sub(st.Written)
		fmt.Fprintf(w, "  %s\t(%s old)\n", l.Announcement.CLI(), age.Round(time.Second))
		for _, n := range l.Neighbors {
			fmt.Fprintf(w, "    to %s: %s\n", n.Address, announcementOnNeighbor(n))
		}
	}
}
