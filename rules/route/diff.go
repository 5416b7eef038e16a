package route

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/state"
)

// Why an Op is made.
const (
	// WhyEnded removes a route no active stored ban and no ban of the
	// ruleset stands for: its ban ended, or the store never knew it (a lost
	// or different state directory, or a route added by hand).
	WhyEnded = "ended"
	// WhyAllowed removes the route of a ban the allow list now covers.
	WhyAllowed = "allowed"
	// WhyRetype removes a route of another type; an add with the same
	// reason re-creates it with the configured type.
	WhyRetype = "type"
	// WhyBan adds the route of a ban of the ruleset.
	WhyBan = "ban"
	// WhyRestore adds the route of a stored ban that is missing from the
	// kernel (flushed from outside) and absent from the ruleset.
	WhyRestore = "restore"
)

// Op is one change of synban's routes: a plain value that Diff decides and
// the executor carries out in order.
type Op struct {
	// Del is true for a removal, false for an addition.
	Del bool
	// Prefix is the route's destination, canonical.
	Prefix netip.Prefix
	// Type is the route type (unix.RTN_*): the observed route's for a
	// removal, the configured one for an addition.
	Type int
	// Why is one of the Why constants.
	Why string
	// Until is the stored end of the ban (zero when unknown or endless),
	// for the logs.
	Until time.Time
	// Reason is the ban's reason, for the logs.
	Reason string
}

// String describes o for logs and test failures: "add 192.0.2.1/32 type 9 (ban)".
func (o Op) String() string {
	verb := "add"
	if o.Del {
		verb = "del"
	}
	return fmt.Sprintf("%s %s type %d (%s)", verb, o.Prefix, o.Type, o.Why)
}

// Left is a ban Diff leaves out: it overlaps the allow list.
type Left struct {
	Prefix, Allow netip.Prefix
	// Stored is true for a ban of the store that the ruleset does not hold
	// (banned earlier, allowed now); false for a ban of the ruleset.
	Stored bool
}

// Plan is what Diff decides.
type Plan struct {
	// Ops are the changes, removals of ended routes first, then per prefix
	// in policy.ComparePrefixes order.
	Ops []Op
	// Refreshed counts bans of the ruleset whose route is already there
	// with the configured type.
	Refreshed int
	// Allowed are the bans left out because they overlap the allow list.
	Allowed []Left
}

// Input is what Diff decides from.
type Input struct {
	// Have maps each observed route of synban's protocol (main table) to
	// its type.
	Have map[netip.Prefix]int
	// Stored are the state store's bans, of every backend; Diff reads
	// those of this backend that have not ended at Now.
	Stored []state.Ban
	// Ruleset is the desired state; nil for an expiry pass, which only
	// removes routes (never adds).
	Ruleset *rules.Ruleset
	// Type is the configured route type (unix.RTN_*).
	Type int
	// Now is the time that decides which stored bans have ended.
	Now time.Time
}

// Diff decides the route changes that make the kernel match the bans of
// in.Ruleset and the active route bans of the store, without side effects:
//
//   - a route that neither stands for is removed (WhyEnded): its stored ban
//     has ended, or the store does not know it;
//   - a wanted ban overlapping in.Ruleset.Allow is left out, and its route
//     removed if present (WhyAllowed);
//   - a wanted ban whose route has another type is re-created (WhyRetype);
//   - a wanted ban without a route gets one (WhyBan, or WhyRestore for a
//     stored ban the ruleset does not hold);
//   - a ban of the ruleset whose route is there already counts as
//     Refreshed (routes have no timeout to renew; the store keeps the end).
//
// With a nil Ruleset (expiry) only the first rule applies.
func Diff(in Input) Plan {
	type wanted struct {
		inRS   bool
		until  time.Time
		reason string
	}
	want := make(map[netip.Prefix]*wanted)
	for _, sb := range in.Stored {
		if sb.Backend != Name || sb.Expired(in.Now) {
			continue
		}
		p := policy.Canonical(sb.Prefix)
		want[p] = &wanted{until: sb.Until, reason: sb.Reason}
	}
	if in.Ruleset != nil {
		for _, b := range in.Ruleset.Bans {
			p := policy.Canonical(b.Prefix)
			if !p.IsValid() {
				continue
			}
			w := want[p]
			if w == nil {
				w = &wanted{}
				want[p] = w
			}
			w.inRS, w.reason = true, b.Reason
			if b.Timeout > 0 {
				w.until = in.Now.Add(b.Timeout)
			} else {
				w.until = time.Time{}
			}
		}
	}

	var plan Plan
	for _, p := range slices.SortedFunc(maps.Keys(in.Have), policy.ComparePrefixes) {
		if want[p] == nil {
			plan.Ops = append(plan.Ops, Op{Del: true, Prefix: p, Type: in.Have[p], Why: WhyEnded})
		}
	}
	if in.Ruleset == nil {
		return plan
	}
	for _, p := range slices.SortedFunc(maps.Keys(want), policy.ComparePrefixes) {
		w := want[p]
		typ, routed := in.Have[p]
		if a, ok := in.Ruleset.AllowOverlap(p); ok {
			plan.Allowed = append(plan.Allowed, Left{Prefix: p, Allow: a, Stored: !w.inRS})
			if routed {
				plan.Ops = append(plan.Ops, Op{Del: true, Prefix: p, Type: typ, Why: WhyAllowed})
			}
			continue
		}
		switch {
		case routed && typ == in.Type:
			if w.inRS {
				plan.Refreshed++
			}
		case routed:
			plan.Ops = append(plan.Ops,
				Op{Del: true, Prefix: p, Type: typ, Why: WhyRetype},
				Op{Prefix: p, Type: in.Type, Why: WhyRetype, Until: w.until, Reason: w.reason})
		case w.inRS:
			plan.Ops = append(plan.Ops, Op{Prefix: p, Type: in.Type, Why: WhyBan, Until: w.until, Reason: w.reason})
		default:
			plan.Ops = append(plan.Ops, Op{Prefix: p, Type: in.Type, Why: WhyRestore, Until: w.until, Reason: w.reason})
		}
	}
	return plan
}
