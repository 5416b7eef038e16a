// Package nft is synban's nftables backend. It talks netlink directly
// (github.com/google/nftables), never runs the nft program, and keeps
// everything in one table of its own: the allow and ban sets (ban elements
// carry their own timeouts and the ban reason as comment), the per-source SYN
// meter and connection-cap sets, and one base chain per hook. The objects
// come from package spec, whose builders also yield the nft text of the dry
// run (templates.NFT), so both show the same thing.
//
// Apply is one kernel transaction and a reconcile: what is already right is
// left alone (sets keep their elements and meter state, unchanged chains keep
// their rule handles), what differs is replaced, and ban sets that must be
// recreated carry their elements over. The reconcile is a pure diff of the
// state read from the kernel against the Spec (differ, giving a Plan of
// operations) and an executor that turns the operations into netlink calls.
package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/nft/spec"
)

// Default table and family, the target of a Backend whose Options name none.
const (
	DefaultTable  = "synban"
	DefaultFamily = "inet"
)

// sockBuf is the netlink socket buffer size: big batches (thousands of rules
// or elements) fail with ENOBUFS or EMSGSIZE on default buffers.
const sockBuf = 16 << 20

// Options configures a Backend.
type Options struct {
	// NetNS is the network namespace file to work in (e.g. /run/netns/X);
	// empty means the current namespace.
	NetNS string
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// Table and Family name the table every call works on, fixed for the
	// Backend's life; empty means DefaultTable and DefaultFamily. Apply
	// refuses a Ruleset that names another (ErrOtherTarget).
	Table, Family string
	// Mode is rules.ModeTable ("" means the same) or rules.ModeSets, in
	// which Table is the operator's table and synban only fills its sets
	// (see Backend). Like the table, it is fixed: Apply refuses a Ruleset
	// of the other mode.
	Mode string
}

// ErrOtherTarget is returned (wrapped) by Apply for a Ruleset whose table,
// family or mode is not the one the Backend was built for: a backend does
// not re-target itself, so that every call of its life (Bans, Unban, Flush,
// status) works on the table the operator configured.
var ErrOtherTarget = errors.New("ruleset targets another table than the backend's")

// Backend is the nftables rules.Backend. Its methods are safe for concurrent
// use; each builds a fresh netlink connection.
type Backend struct {
	netns string
	log   *slog.Logger

	// The target, fixed by New.
	table  string
	family string
	fam    nftables.TableFamily
	mode   string
	// mu guards appliedGen and appliedGenOK: the generation the last Apply
	// left, and whether it can be trusted (see AppliedGeneration).
	mu           sync.Mutex
	appliedGen   uint32
	appliedGenOK bool
}

var _ rules.Backend = (*Backend)(nil)

// New returns an nftables backend. It does not touch the kernel; call Probe
// to find out whether nftables works.
func New(opts Options) (*Backend, error) {
	b := &Backend{netns: opts.NetNS, log: opts.Logger, table: opts.Table, family: opts.Family, mode: targetMode(opts.Mode)}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.table == "" {
		b.table = DefaultTable
	}
	if b.family == "" {
		b.family = DefaultFamily
	}
	fam, err := spec.ParseFamily(b.family)
	if err != nil {
		return nil, fmt.Errorf("nftables backend: %w", err)
	}
	b.fam = fam
	switch b.mode {
	case rules.ModeTable, rules.ModeSets:
	default:
		return nil, fmt.Errorf("nftables backend: mode %q: want %q or %q", opts.Mode, rules.ModeTable, rules.ModeSets)
	}
	if b.netns != "" {
		if _, err := os.Stat(b.netns); err != nil {
			return nil, fmt.Errorf("nftables backend: network namespace: %w", err)
		}
	}
	return b, nil
}

// Probe checks that nftables works in the namespace of opts: it opens a
// netlink connection and lists the tables.
func Probe(opts Options) error {
	b, err := New(opts)
	if err != nil {
		return err
	}
	c, done, err := b.conn()
	if err != nil {
		return fmt.Errorf("nftables probe: %w", err)
	}
	defer done()
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyUnspecified); err != nil {
		return fmt.Errorf("nftables probe: list tables: %w", err)
	}
	return nil
}

// Name is "nftables".
func (b *Backend) Name() string { return "nftables" }

// targetMode normalises a mode: "" is rules.ModeTable.
func targetMode(m string) string {
	if m == "" {
		return rules.ModeTable
	}
	return m
}

// target is the table the backend works on.
func (b *Backend) target() (string, nftables.TableFamily) { return b.table, b.fam }

// setsMode reports whether the backend works in the operator's table.
func (b *Backend) setsMode() bool { return b.mode == rules.ModeSets }

// conn opens a fresh netlink connection (errors inside a Conn are sticky,
// so every transaction gets its own) with large socket buffers, in the
// backend's namespace. done releases the namespace file.
func (b *Backend) conn() (*nftables.Conn, func(), error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers, largeDumps)}
	done := func() {}
	if b.netns != "" {
		f, err := os.Open(b.netns)
		if err != nil {
			return nil, nil, fmt.Errorf("open network namespace: %w", err)
		}
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
		done = func() { _ = f.Close() }
	}
	c, err := nftables.New(opts...)
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("netlink connection: %w", err)
	}
	return c, done, nil
}

// bigBuffers raises the socket buffers, past the rmem_max/wmem_max limits
// when privileged (the *BUFFORCE options), else as far as allowed.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBuf); e != nil {
				if e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBuf); e2 != nil {
					serr = errors.Join(serr, e2)
				}
			}
		}
	}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set netlink socket buffers: %w", serr)
	}
	return nil
}

// Bans lists the elements of the four ban sets, prefixes rebuilt from
// interval elements, with their time left and reason. No table means no bans.
func (b *Backend) Bans(ctx context.Context) ([]rules.ActiveBan, error) {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, banSets)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	var out []rules.ActiveBan
	for _, set := range banSets {
		for _, e := range st.elems[set] {
			out = append(out, rules.ActiveBan{
				Ban:     rules.Ban{Prefix: e.prefix, Timeout: e.timeout, Reason: e.comment},
				Expires: e.expires,
			})
		}
	}
	return out, nil
}

var _ rules.DropCounter = (*Backend)(nil)

// BanDrops returns the packets each ban has dropped, from the per-element
// counters of the ban sets (declared with the counter flag). Elements
// without a counter (sets mode, when the operator's sets lack the flag) are
// left out. No table means no counts.
func (b *Backend) BanDrops(ctx context.Context) (map[netip.Prefix]uint64, error) {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("ban drop counters: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, banSets)
	if err != nil {
		return nil, fmt.Errorf("ban drop counters: %w", err)
	}
	out := map[netip.Prefix]uint64{}
	for _, set := range banSets {
		for _, e := range st.elems[set] {
			if e.counted {
				out[canonical(e.prefix)] = e.packets
			}
		}
	}
	return out, nil
}

// Unban deletes the given bans (exact prefixes) in one transaction and
// reports how many were present. Absent prefixes are not an error.
func (b *Backend) Unban(ctx context.Context, prefixes []netip.Prefix) (int, error) {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return 0, fmt.Errorf("unban: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, banSets)
	if err != nil {
		return 0, fmt.Errorf("unban: %w", err)
	}
	if st.table == nil {
		return 0, nil
	}
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		want[canonical(p)] = true
	}
	n := 0
	for _, set := range banSets {
		s := st.sets[set]
		if s == nil {
			continue
		}
		var del []nftables.SetElement
		for _, e := range st.elems[set] {
			if want[e.prefix] {
				del = append(del, e.raw...)
				n++
			}
		}
		for _, part := range chunks(del) {
			if err := c.SetDeleteElements(s, part); err != nil {
				return 0, fmt.Errorf("unban from %s: %w", set, err)
			}
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("unban %d elements: %w", n, err)
	}
	b.log.Info("unbanned", "table", name, "removed", n, "asked", len(prefixes))
	return n, nil
}

// Counters reports the packets and bytes of every rule in synban's table
// that has a counter, named by the rule's comment. In sets mode it reports
// the rules of the operator's table whose comment names one of synban's
// sets (as the example rules of `synban render nft-include` do).
func (b *Backend) Counters(ctx context.Context) ([]rules.Counter, error) {
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return nil, fmt.Errorf("counters: %w", err)
	}
	defer done()
	st, err := readState(ctx, c, name, fam, nil)
	if err != nil {
		return nil, fmt.Errorf("counters: %w", err)
	}
	sets := b.setsMode()
	var out []rules.Counter
	for _, ch := range st.chainOrder {
		for _, r := range st.rules[ch] {
			cnt := ruleCounter(r)
			if cnt == nil || sets && !slices.Contains(managedSets, ruleComment(r)) {
				continue
			}
			out = append(out, rules.Counter{Chain: ch, Rule: ruleComment(r), Packets: cnt.Packets, Bytes: cnt.Bytes})
		}
	}
	return out, nil
}

// Flush deletes synban's table if it exists, and nothing else. In sets mode
// it empties synban's sets in the operator's table and deletes nothing.
func (b *Backend) Flush(ctx context.Context) error {
	if b.setsMode() {
		return b.flushSets(ctx)
	}
	name, fam := b.target()
	c, done, err := b.conn()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	defer done()
	t, err := findTable(c, name, fam)
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if t == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return fmt.Errorf("flush: delete table %s: %w", name, err)
	}
	b.log.Info("deleted table", "table", name)
	return nil
}
