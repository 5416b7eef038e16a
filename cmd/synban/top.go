package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/engine"
)

// viewOptions are the flags of top and sample --top.
type viewOptions struct {
	once   bool
	top    int
	sort   string
	filter string
	every  time.Duration
}

// topSorts are top's orders, in the order the s key cycles through them.
func topSorts() []string { return []string{"syn_recv", "established", "total", "drops"} }

func flagsTop(fs *flag.FlagSet, o *options) {
	flagsBackend(fs, o)
	flagsState(fs, o)
	flagsFrom(fs, o)
	fs.DurationVar(&o.view.every, "every", 2*time.Second, "time between refreshes (at least 100ms)")
	fs.BoolVar(&o.view.once, "once", false, "print one refresh as plain text (or JSON with --json) and exit, for scripts")
	fs.IntVar(&o.view.top, "top", 0, "show at most N rows (0: as many as the terminal holds; all with --once)")
	fs.StringVar(&o.view.sort, "sort", "syn_recv", "sort rows by "+strings.Join(topSorts(), ", ")+" (most first)")
	fs.StringVar(&o.view.filter, "filter", "", "show only rows whose subject or verdict contains this text")
}

// sortedRows returns the rows passing the filter, in the order asked, most
// first, then by subject; at most nSources sources and nPrefixes prefixes
// (0: all).
func sortedRows(rows []engine.TopRow, by, filter string, nSources, nPrefixes int) []engine.TopRow {
	out := make([]engine.TopRow, 0, len(rows))
	for _, r := range rows {
		if filter == "" || strings.Contains(r.Subject, filter) || strings.Contains(r.Verdict+" "+r.Why, filter) {
			out = append(out, r)
		}
	}
	key := func(r engine.TopRow) int64 {
		switch by {
		case "established":
			return int64(r.Established)
		case "total":
			return int64(r.Total)
		case "drops":
			if r.Drops == nil {
				return -1
			}
			return int64(*r.Drops)
		}
		return int64(r.SynRecv)
	}
	slices.SortStableFunc(out, func(a, b engine.TopRow) int {
		if c := cmp.Compare(key(b), key(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	limit := map[bool]int{false: nSources, true: nPrefixes}
	kept := out[:0]
	seen := map[bool]int{}
	for _, r := range out {
		if limit[r.Prefix] == 0 || seen[r.Prefix] < limit[r.Prefix] {
			kept = append(kept, r)
			seen[r.Prefix]++
		}
	}
	return kept
}

// writeTop renders a snapshot: a header, the sources, then the
// aggregation prefixes holding more than one source (at most nPrefixes).
func writeTop(w io.Writer, s *engine.TopSnapshot, vo viewOptions, rows []engine.TopRow, nPrefixes int, hint string) {
	c := s.Counters
	fmt.Fprintf(w, "synban top — %s; sampler %s, %d sample(s), %d sources\n", s.At.Format("15:04:05"), s.Sampler, s.Samples, s.Sources)
	fmt.Fprintf(w, "flood: %s — %s\n", s.Class.Kind, s.Class.Why)
	fmt.Fprintf(w, "half-open: %d entries from %d sources; cookies sent %d, recv %d, failed %d; listen drops %d, overflows %d, reqq full %d\n",
		s.Class.HalfOpenEntries, s.Class.HalfOpenSources, c.SyncookiesSent, c.SyncookiesRecv, c.SyncookiesFailed, c.ListenDrops, c.ListenOverflows, c.TCPReqQFullDrop)
	switch {
	case s.BackendErr != "":
		fmt.Fprintf(w, "kernel: %s\n", s.BackendErr)
	case len(s.RuleDrops) == 0:
		fmt.Fprintf(w, "kernel: %s; no drop rule of synban's yet\n", s.Backend)
	default:
		fmt.Fprintf(w, "kernel: %s; drops: %s\n", s.Backend, strings.Join(s.RuleDrops, ", "))
	}
	fmt.Fprintf(w, "sort: %s; filter: %q%s\n", vo.sort, vo.filter, hint)
	var sources, prefixes []engine.TopRow
	for _, r := range rows {
		if r.Prefix {
			prefixes = append(prefixes, r)
		} else {
			sources = append(sources, r)
		}
	}
	if len(prefixes) > nPrefixes {
		prefixes = prefixes[:nPrefixes]
	}
	width := len("SOURCE")
	for _, r := range rows {
		width = max(width, len(r.Subject))
	}
	table := func(title string, rows []engine.TopRow) {
		fmt.Fprintf(w, "\n%-*s %9s %11s %7s %5s  %-32s %9s %9s\n", width, title, "SYN_RECV", "ESTABLISHED", "TOTAL", "SRCS", "VERDICT", "BAN", "DROPS")
		for _, r := range rows {
			verdict := "-"
			if r.Verdict != "" {
				verdict = r.Verdict + ": " + r.Why
			}
			if len(verdict) > 32 {
				verdict = verdict[:31] + "…"
			}
			ban, drops := "-", "-"
			if r.Banned {
				ban = "no expiry"
				if r.BanLeft > 0 {
					ban = (time.Duration(r.BanLeft) * time.Second).String()
				}
			}
			if r.Drops != nil {
				drops = fmt.Sprint(*r.Drops)
			}
			fmt.Fprintf(w, "%-*s %9d %11d %7d %5d  %-32s %9s %9s\n", width, r.Subject, r.SynRecv, r.Established, r.Total, r.Sources, verdict, ban, drops)
		}
	}
	table("SOURCE", sources)
	if len(sources) == 0 {
		fmt.Fprintln(w, "(none)")
	}
	if len(prefixes) > 0 {
		table("PREFIX", prefixes)
	}
}

// cmdTop shows sources and prefixes live, refreshed every --every, until q;
// with --once it prints one refresh for scripts. It writes nothing.
func cmdTop(ctx context.Context, a *app, o *options, args []string) error {
	if err := noArgs("top", args); err != nil {
		return err
	}
	vo := o.view
	if !slices.Contains(topSorts(), vo.sort) {
		return badInput("--sort %q: want one of %s", vo.sort, strings.Join(topSorts(), ", "))
	}
	if vo.top < 0 {
		return badInput("--top %d: want 0 or more rows", vo.top)
	}
	if vo.every < 100*time.Millisecond {
		return badInput("--every %s: want at least 100ms", vo.every)
	}
	p, err := loadPolicyFor(o)
	if err != nil {
		return err
	}
	e := a.engine(o)
	take := func(ctx context.Context) (*engine.TopSnapshot, error) { return e.Top(ctx, p) }
	if vo.once || o.json {
		s, err := take(ctx)
		if err != nil {
			return err
		}
		rows := sortedRows(s.Rows, vo.sort, vo.filter, vo.top, vo.top)
		if o.json {
			return jsondoc.Write(a.stdout, jsondoc.TopOf(s, rows))
		}
		writeTop(a.stdout, s, vo, rows, len(rows), "")
		return nil
	}
	in, out := os.Stdin, a.stdout
	if _, err := unix.IoctlGetTermios(int(in.Fd()), unix.TCGETS); err != nil {
		return badInput("top needs a terminal on standard input; use top --once (or --json) in scripts")
	}
	m := &topModel{ctx: ctx, take: take, vo: vo, height: 24}
	prog := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen())
	if _, err := prog.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("top: %w", err)
	}
	return m.err
}

// topModel is top's bubbletea model.
type topModel struct {
	ctx  context.Context
	take func(context.Context) (*engine.TopSnapshot, error)
	vo   viewOptions
	snap *engine.TopSnapshot
	// err is the last refresh's failure, shown until the next succeeds;
	// fatal ones (bad input) end top.
	err           error
	editing       bool
	input         string
	width, height int
}

type snapMsg struct {
	s   *engine.TopSnapshot
	err error
}

type tickMsg struct{}

func (m *topModel) fetch() tea.Msg {
	s, err := m.take(m.ctx)
	return snapMsg{s, err}
}

// Init takes the first refresh.
func (m *topModel) Init() tea.Cmd { return m.fetch }

// Update handles refreshes, the clock and keys: q quits, s cycles the
// sort, / edits the filter (Enter applies, Esc cancels), Esc clears it.
func (m *topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case snapMsg:
		if msg.err != nil {
			m.err = msg.err
		} else {
			m.snap, m.err = msg.s, nil
		}
		return m, tea.Tick(m.vo.every, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.fetch
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyMsg:
		key := msg.String()
		if m.editing {
			switch key {
			case "enter":
				m.vo.filter, m.editing = m.input, false
			case "esc":
				m.editing = false
			case "backspace":
				if m.input != "" {
					m.input = m.input[:len(m.input)-1]
				}
			case "ctrl+c":
				return m, tea.Quit
			default:
				if msg.Type == tea.KeyRunes {
					m.input += string(msg.Runes)
				}
			}
			return m, nil
		}
		switch key {
		case "q", "ctrl+c":
			m.err = nil
			return m, tea.Quit
		case "s":
			sorts := topSorts()
			m.vo.sort = sorts[(slices.Index(sorts, m.vo.sort)+1)%len(sorts)]
		case "/":
			m.editing, m.input = true, m.vo.filter
		case "esc":
			m.vo.filter = ""
		}
	}
	return m, nil
}

// View renders the latest refresh to fit the terminal.
func (m *topModel) View() string {
	var b strings.Builder
	hint := "   [q] quit  [s] sort  [/] filter  [esc] clear"
	if m.editing {
		hint = "   filter: " + m.input + "█  (enter to apply, esc to cancel)"
	}
	if m.snap == nil {
		b.WriteString("synban top: taking the first sample…" + hint + "\n")
		if m.err != nil {
			fmt.Fprintf(&b, "error: %v\n", m.err)
		}
		return b.String()
	}
	// The screen holds the header (6 lines), the sources and up to five
	// prefixes (with their own header and a blank line).
	n := m.vo.top
	room := m.height - 6
	nPrefixes := min(5, max(room/4, 1))
	if n == 0 || n > room-nPrefixes-2 {
		n = max(room-nPrefixes-2, 1)
	}
	writeTop(&b, m.snap, m.vo, sortedRows(m.snap.Rows, m.vo.sort, m.vo.filter, n, nPrefixes), nPrefixes, hint)
	if m.err != nil {
		fmt.Fprintf(&b, "refresh failed: %v\n", m.err)
	}
	return b.String()
}
