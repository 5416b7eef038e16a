package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/rules"
)

// cmdStatus shows the backend, the bans in the kernel and the drop counters,
// and says plainly what the kernel lacks of what the state store holds. It
// writes nothing: no state directory is created (the store is read only when
// it exists), no store updated, and the backend is opened read-only (no
// table, chain, set or route created, expired or removed).
func cmdStatus(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("status", args); err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	st, err := a.engine(o).Status(ctx, p)
	if err != nil {
		return err
	}
	choice := st.Choice
	up, err := upstreamStatus(ctx, a, o, p)
	if err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.StatusOf(st, up, p.Upstream.Enabled, time.Now()))
	}
	fmt.Fprintf(a.stdout, "backend: %s (%s)\n", choice.Name, choice.Why)
	for _, n := range st.Notes {
		fmt.Fprintln(a.stdout, n)
	}
	fmt.Fprintf(a.stdout, "bans: %d\n", len(st.Bans))
	writeBans(a.stdout, st.Bans)
	if len(st.Counters) > 0 {
		fmt.Fprintln(a.stdout, "drops:")
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, c := range st.Counters {
			fmt.Fprintf(tw, "  %s\t%s\t%d packets\t%d bytes\n", c.Chain, c.Rule, c.Packets, c.Bytes)
		}
		tw.Flush()
	}
	writeXDPStatus(a.stdout, st.XDP, time.Now())
	writeUpstreamStatus(a.stdout, p, up, time.Now())
	return nil
}

// writeXDPStatus prints the XDP fast path: where the program is and each
// entry's drops in the driver.
func writeXDPStatus(w io.Writer, x *engine.XDPState, now time.Time) {
	if x == nil {
		return
	}
	on := "attached nowhere"
	if len(x.Attached) > 0 {
		on = "on " + strings.Join(x.Attached, ", ") + " (" + x.Mode + ")"
	}
	fmt.Fprintf(w, "xdp: %s, %d entries\n", on, len(x.Entries))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, d := range x.Entries {
		left := "never expires"
		if !d.Expires.IsZero() {
			left = max(d.Expires.Sub(now), 0).Round(time.Second).String() + " left"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d packets dropped\n", d.Prefix, left, d.Packets)
	}
	tw.Flush()
}

func writeBans(w io.Writer, bans []rules.ActiveBan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range bans {
		left := "never expires"
		if b.Expires > 0 {
			left = b.Expires.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", b.Prefix, left, b.Reason)
	}
	tw.Flush()
}

func cmdBan(ctx context.Context, a *app, o *options, args []string) error {
	if o.banFile != "" && len(args) > 0 {
		return badInput("ban takes an address or prefix, or --from-file, not both")
	}
	if o.banFile == "" && len(args) != 1 {
		return badInput("ban takes one address or prefix, got %d arguments", len(args))
	}
	if err := checkBackendFlag(o.backend); err != nil {
		return err
	}
	var subject netip.Prefix
	var reqs []engine.BanRequest
	var err error
	if o.banFile != "" {
		reqs, err = readBanFile(o.banFile)
	} else {
		subject, err = parseSubject(args[0])
	}
	if err != nil {
		return err
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	d := p.Ban.Duration.Duration
	if o.banFor != "" {
		d, err = time.ParseDuration(o.banFor)
		if err != nil || d < time.Second {
			return badInput("--for %q: want a duration of at least 1s such as 90s, 10m or 2h", o.banFor)
		}
	}
	if reqs != nil {
		bulk, err := a.engine(o).BanAll(ctx, p, reqs, d, o.force)
		if err != nil {
			return err
		}
		if o.json {
			return jsondoc.Write(a.stdout, jsondoc.BanOf(bulk.Backend, d, bulk.Bans, bulk.Covered))
		}
		note := ""
		if bulk.Covered > 0 {
			note = fmt.Sprintf(", %d more inside them", bulk.Covered)
		}
		fmt.Fprintf(a.stdout, "banned %d addresses and prefixes%s for %s (%s)\n", len(bulk.Bans), note, bulk.Bans[0].Timeout, bulk.Backend)
		return nil
	}
	banned, err := a.engine(o).Ban(ctx, p, subject, d, o.force)
	if err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.BanOf(banned.Backend, d, []rules.Ban{banned.Ban}, 0))
	}
	note := ""
	if banned.Ban.Timeout < d {
		note = " (capped by ban.max_duration)"
	}
	fmt.Fprintf(a.stdout, "banned %s for %s%s (%s)\n", banned.Ban.Prefix, banned.Ban.Timeout, note, banned.Backend)
	return nil
}

// readBanFile reads ban --from-file: a file (a regular one only, so a FIFO
// planted there cannot hang a root run) or "-" for standard input.
func readBanFile(name string) ([]engine.BanRequest, error) {
	if name == "-" {
		return engine.ParseBanList(os.Stdin, "stdin")
	}
	f, err := trust.OpenRegular(name, true)
	if err != nil {
		return nil, badInput("--from-file: %w", err)
	}
	defer f.Close()
	return engine.ParseBanList(f, name)
}

func cmdUnban(ctx context.Context, a *app, o *options, args []string) error {
	if len(args) == 0 {
		return badInput("unban takes one or more addresses or prefixes")
	}
	if err := checkBackendFlag(o.backend); err != nil {
		return err
	}
	var subjects []netip.Prefix
	for _, arg := range args {
		s, err := parseSubject(arg)
		if err != nil {
			return err
		}
		subjects = append(subjects, s)
	}
	p, err := loadPolicy(o)
	if err != nil {
		return err
	}
	n, backend, err := a.engine(o).Unban(ctx, p, subjects)
	if err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.Unban{Backend: backend, Requested: len(subjects), Unbanned: n})
	}
	fmt.Fprintf(a.stdout, "unbanned %d of %d (%s)\n", n, len(subjects), backend)
	return nil
}

func cmdFlush(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("flush", args); err != nil {
		return err
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	backend, err := a.engine(o).Flush(ctx, p)
	if err != nil {
		return err
	}
	if o.json {
		return jsondoc.Write(a.stdout, jsondoc.Flush{Backend: backend})
	}
	fmt.Fprintf(a.stdout, "removed everything synban created (%s)\n", backend)
	return nil
}
