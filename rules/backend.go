package rules

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Backend turns a Ruleset into kernel state. Every backend (rules/nft,
// rules/ipt, rules/route) implements it, and one contract test suite
// (rules/backendtest) runs against each in a real network namespace, and
// against rules/memory, the in-memory backend of the root-free tests.
//
// A backend touches only what it created: its own table, chain, jump, sets
// or tagged routes.
type Backend interface {
	// Name is the backend's name: "nftables", "iptables" or "route".
	Name() string
	// Apply reconciles the kernel with rs in as few steps as the backend
	// allows (one transaction for nftables): it creates what is missing,
	// changes only what differs, adds rs.Bans and refreshes the timeout of
	// those already present. Bans present in the kernel but not in rs are
	// kept (they expire by themselves). Applying the same rs twice changes
	// nothing; applying after an outside flush restores the structure.
	Apply(ctx context.Context, rs *Ruleset) (Result, error)
	// Bans lists the active bans with the time each has left.
	Bans(ctx context.Context) ([]ActiveBan, error)
	// Unban removes the given bans (exact prefixes) and reports how many
	// were present.
	Unban(ctx context.Context, prefixes []netip.Prefix) (int, error)
	// Counters reports the packets and bytes dropped per rule.
	Counters(ctx context.Context) ([]Counter, error)
	// Flush removes everything synban created, and nothing else.
	Flush(ctx context.Context) error
}

// DropCounter is implemented by backends that count, per ban, the packets
// it dropped: nftables (ban sets declared with the counter flag) and
// iptables (ipset sets created with counters). The route backend has no
// per-route counter and does not implement it; there, a source seen again
// while its ban holds is always treated as stale evidence (never a refresh
// or an escalation).
//
// Escalation uses the counters to tell a banned source that keeps sending
// (the count grows between runs) from traces of an offence the ban already
// answered (half-open entries made before the ban outlive it).
type DropCounter interface {
	// BanDrops returns the packets dropped so far by each ban present in the
	// kernel whose element carries a counter, by canonical prefix. A ban
	// missing from the map has no counter (for instance a set created by
	// an older synban, or by the operator in sets mode without the flag).
	// A counter restarts at zero when its element is re-added (a refresh).
	BanDrops(ctx context.Context) (map[netip.Prefix]uint64, error)
}

// Sensor is implemented by backends whose SYN meter also records, per
// source, the SYNs it finds over the limit: nftables (the hot sets, a
// counter per element, updated only on the meter's over-limit path) and
// iptables (the hashlimit table the kernel publishes per source). It sees
// what the socket table cannot: SYNs answered with cookies (no half-open
// entry) and SYNs the meter dropped before they reached a socket.
type Sensor interface {
	// SensorRead returns the sensor's table now. A backend whose meter is
	// off, or whose sensor sets are missing, returns an empty reading
	// without error.
	SensorRead(ctx context.Context) (SensorReading, error)
}

// SensorReading is one reading of a backend's sensor.
type SensorReading struct {
	// Table names what was read ("inet synban hot_v4, hot_v6",
	// "/proc/net/ipt_hashlimit/synban_syn4"), for reports.
	Table string
	// Counted says Sources carry packet counts (Packets). Without counts
	// (iptables' hashlimit) a source is listed while the meter holds it
	// over the limit, and Over says so.
	Counted bool
	// InPlace says the sensor's sets or tables exist: an empty reading
	// then means no source over the meter, not that no meter counts yet
	// (the table is not there before the first run installs it).
	InPlace bool
	// Sources are the sources the meter has found over its limit, keyed
	// like the meter (an address; an IPv6 prefix when the meter keys IPv6
	// sources on one), in canonical form.
	Sources []SensorSource
}

// SensorSource is one source in a sensor reading.
type SensorSource struct {
	Prefix netip.Prefix
	// Packets is the SYNs over the meter counted since the source entered
	// the table (Counted readings).
	Packets uint64
	// Over is set when the source's meter bucket is empty now: its last
	// SYN was over the limit (uncounted readings).
	Over bool
	// Expires is how long the source's entry lives without another SYN over
	// the meter.
	Expires time.Duration
}

// Generationer is implemented by backends whose kernel state carries a
// generation id that every committed change moves, whoever makes it
// (nftables: NFT_MSG_GETGEN). The engine records the generation after a
// successful run and, while it stays the same and the run decides nothing
// new, does not read the kernel's bans back.
type Generationer interface {
	// Generation returns the kernel's generation now.
	Generation(ctx context.Context) (uint32, error)
	// AppliedGeneration returns the generation the last successful Apply
	// left the kernel at, and false when that cannot be vouched for (no
	// Apply yet, or another change came between its read and its commit).
	AppliedGeneration() (uint32, bool)
}

// Expirer is implemented by backends without kernel timeouts (the route
// backend): Expire removes from the kernel the bans whose time, as the state
// store records it, has passed, and those the store does not know, and
// reports how many it removed. It only reads the store. The caller runs it
// after recording the run's bans and expiring the store.
type Expirer interface {
	Expire(ctx context.Context) (int, error)
}

// Inspector is implemented by backends that can list, without changing
// anything, what of their structure (table, chains, sets) the kernel lacks.
// A backend without structure (routes) does not implement it.
type Inspector interface {
	Missing(ctx context.Context) ([]string, error)
}

// PathReporter is implemented by backends that run programs (iptables):
// Paths returns the IPv4 and IPv6 programs they run.
type PathReporter interface {
	Paths() (v4, v6 string)
}

// Result says what an Apply changed.
type Result struct {
	// Created is true when the structure (table, chains, sets) had to be
	// created or restored, for instance after an outside flush.
	Created bool
	// Changed names structural objects that were replaced because they differed.
	Changed []string
	// Added counts bans that were not present; Refreshed those present whose
	// timeout was renewed.
	Added, Refreshed int
	// Forget lists bans, of the ruleset or recorded in the state store, that
	// the backend does not hold and will not: another owner's route to the
	// same destination, or a stored ban the allow list now covers. The
	// caller that keeps the store (the only writer) drops them from it.
	// Only the route backend sets it.
	Forget []netip.Prefix
}

// ActiveBan is a ban present in the kernel (or, for backends without kernel
// timeouts, in the state store).
type ActiveBan struct {
	Ban
	// Expires is the time left; 0 means the ban does not expire.
	Expires time.Duration
}

// Counter is the drop counter of one rule.
type Counter struct {
	// Chain and Rule name the rule, e.g. "input" and "ban_v4".
	Chain, Rule    string
	Packets, Bytes uint64
}

// ErrNotSupported is returned (wrapped) by a backend that cannot do what was
// asked, e.g. the route backend's SYN meter.
var ErrNotSupported = errors.New("not supported by this backend")
