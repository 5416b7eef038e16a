package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/engine"
	"github.com/synban/synban/internal/trust"
	"github.com/synban/synban/policy"
)

// Exit codes, documented in README.md.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitLocked  = 3
)

// usageError marks bad input: it maps to exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func badInput(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// command is one subcommand.
type command struct {
	name, args, summary string
	// setup adds the subcommand's own flags.
	setup func(fs *flag.FlagSet, o *options)
	run   func(ctx context.Context, a *app, o *options, args []string) error
}

// options holds every flag; each subcommand registers the ones it accepts.
type options struct {
	from     string
	config   string
	stateDir string
	verbose  bool
	json     bool
	logJSON  bool
	backend  string
	format   string
	banFor   string
	force    bool
	// banFile is ban --from-file: a list of subjects, "-" for stdin.
	banFile string
	dryRun  bool
	every   string
	noNFT   bool
	// online is check's --online: try the [crowdsec] LAPI login and stream.
	online bool
	// wait is --wait: how long to wait for the state lock (0: exit 3 at once).
	wait time.Duration
	// logLevel is --log-level: debug, info, warn or error ("" is warn, -v debug).
	logLevel string
	// render's flags: the synban program the units run, where to write them,
	// and cron's user field.
	binary, outputDir, cronUser, watchEvery string
	// view holds top's flags and sample's --top.
	view viewOptions
}

// app carries what a command writes to; there is no global state.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// engine returns the engine for the command's flags. The guard spares the
// client of the SSH session running synban (SSH_CONNECTION, else
// SSH_CLIENT).
func (a *app) engine(o *options) *engine.Engine {
	ssh := os.Getenv("SSH_CONNECTION")
	if ssh == "" {
		ssh = os.Getenv("SSH_CLIENT")
	}
	return engine.New(a.log, engine.Options{StateDir: o.stateDir, Wait: o.wait, Backend: o.backend,
		DisableNFTables: o.noNFT, From: o.from, SSHConnection: ssh})
}

func commands() []*command {
	return []*command{
		{name: "run", summary: "sample, decide and apply bans (--dry-run: print instead)", setup: flagsRun, run: cmdRun},
		{name: "plan", summary: "same as run --dry-run: print the verdicts and the ruleset, apply nothing", setup: flagsPlan, run: cmdPlan},
		{name: "check", summary: "validate a policy file (--online: also try the CrowdSec LAPI)", setup: flagsCheck, run: cmdCheck},
		{name: "sample", summary: "print the per-source table of what was sampled", setup: flagsSample, run: cmdSample},
		{name: "status", summary: "show the backend, active bans with time left, and drop counters", setup: flagsStatus, run: cmdStatus},
		{name: "ban", args: "ADDR|PREFIX", summary: "ban an address or prefix, or a list of them with --from-file FILE (--for DURATION)", setup: flagsBan, run: cmdBan},
		{name: "unban", args: "ADDR|PREFIX...", summary: "remove bans", setup: flagsLocked, run: cmdUnban},
		{name: "flush", summary: "remove everything synban created, nothing else", setup: flagsLocked, run: cmdFlush},
		{name: "upstream", summary: "run the upstream BGP speaker ([upstream]): announce what runs decide, withdraw everything on SIGTERM", setup: flagsUpstream, run: cmdUpstream},
		{name: "watch", summary: "run the run cycle every --every (default 10s) until SIGTERM", setup: flagsWatch, run: cmdWatch},
		{name: "render", args: "KIND", summary: "print a file to install, from the policy (KIND: " + renderKindNames() + ")", setup: flagsRender, run: cmdRender},
		{name: "policy", args: "default|show", summary: "print the embedded default policy, or (show) the effective policy of -c FILE with every default filled in", setup: flagsCommon, run: cmdPolicy},
		{name: "version", summary: "print the version", setup: flagsJSON, run: cmdVersion},
		{name: "explain", args: "ADDR|PREFIX", summary: "tell why an address or prefix is or is not banned, with the numbers (writes nothing)", setup: flagsExplain, run: cmdExplain},
		{name: "completion", args: "SHELL", summary: "print the shell completion script for SHELL: bash, zsh or fish", setup: flagsNone, run: cmdCompletion},
		{name: "top", summary: "a live view of sources and prefixes, verdicts, bans and drops (q quits; --once for scripts; writes nothing)", setup: flagsTop, run: cmdTop},
		{name: "man", summary: "print the manual page in roff (synban man | man -l -)", setup: flagsNone, run: cmdMan},
	}
}

// flagsJSON adds --json, which every command that prints a document
// takes (not completion and man, which print a script or roff, nor the
// upstream daemon).
func flagsJSON(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.json, "json", false, "print machine-readable JSON (docs/json.md), errors included")
}

// flagsCommon adds the flags of every command that loads a policy and
// prints a document.
func flagsCommon(fs *flag.FlagSet, o *options) {
	flagsJSON(fs, o)
	flagsPolicy(fs, o)
}

// flagsPolicy adds the policy and logging flags.
func flagsPolicy(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.config, "c", "", "policy file (default: the embedded default policy)")
	fs.StringVar(&o.config, "config", "", "policy file (default: the embedded default policy)")
	fs.BoolVar(&o.verbose, "v", false, "verbose: log every step")
	fs.BoolVar(&o.logJSON, "log-json", false, "write logs as JSON")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn (default) or error; -v means debug")
}

func flagsCheck(fs *flag.FlagSet, o *options) {
	flagsCommon(fs, o)
	fs.BoolVar(&o.online, "online", false, "also log in to the [crowdsec] LAPI and pull its stream (exit 1 when refused or unreachable)")
}

func flagsBackend(fs *flag.FlagSet, o *options) {
	flagsCommon(fs, o)
	fs.StringVar(&o.backend, "backend", "", "firewall backend: auto, nftables, iptables or route (default: the policy's)")
	fs.BoolVar(&o.noNFT, "disable-nftables", false, "treat nftables as unusable (for hosts where it must not be used)")
}

// flagsState adds --state-dir, for the commands that read or write the
// state store (or, render, name it in the units).
func flagsState(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.stateDir, "state-dir", engine.DefaultStateDir, "state directory")
}

// flagsUpstream: the speaker reads the hand-off file in the state
// directory and writes its status there. It is a daemon that prints no
// document, so it takes no --json (its logs: --log-json).
func flagsUpstream(fs *flag.FlagSet, o *options) {
	flagsPolicy(fs, o)
	flagsState(fs, o)
}

func flagsStatus(fs *flag.FlagSet, o *options) {
	flagsBackend(fs, o)
	flagsState(fs, o)
}

func flagsPlan(fs *flag.FlagSet, o *options) {
	flagsStatus(fs, o)
	flagsFrom(fs, o)
	fs.StringVar(&o.format, "format", "", "print only the ruleset in this syntax: nft, iptables or route")
}

func flagsFrom(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.from, "from", "", "replay a captured table: a directory holding net/tcp and net/tcp6 in /proc format (dry runs only)")
}

// flagsSample: sample reads the sensor of the backend a run would use, so
// it takes --backend too.
func flagsSample(fs *flag.FlagSet, o *options) {
	flagsBackend(fs, o)
	flagsFrom(fs, o)
	fs.IntVar(&o.view.top, "top", 0, "print only the N sources with the most entries (0: all)")
}

func flagsRun(fs *flag.FlagSet, o *options) {
	flagsPlan(fs, o)
	flagsWait(fs, o)
	fs.BoolVar(&o.dryRun, "dry-run", false, "print what would be applied, apply nothing")
}

func flagsBan(fs *flag.FlagSet, o *options) {
	flagsLocked(fs, o)
	fs.StringVar(&o.banFor, "for", "", "ban duration (default: the policy's ban.duration)")
	fs.BoolVar(&o.force, "force", false, "ban a prefix broader than ban.min_ipv4_length/min_ipv6_length (never a /0)")
	fs.StringVar(&o.banFile, "from-file", "", "ban every address or prefix in FILE, one a line (# comments; - for stdin), in one transaction")
}

// Main runs synban with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "help" {
		return help(stdout, stderr, cmds, args[1:])
	}
	// Errors found before the flags are parsed are JSON documents too when
	// --json is on the command line.
	wantJSON := jsonAsked(args[1:])
	cmd := findCommand(cmds, args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "synban: unknown command %q (see synban --help)\n", args[0])
		if wantJSON {
			jsondoc.WriteError(stdout, fmt.Sprintf("unknown command %q (see synban --help)", args[0]), errorKind(exitUsage))
		}
		return exitUsage
	}
	o := &options{}
	fs := newFlagSet(cmd, stderr, o)
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, fs, cmd)
			return exitOK
		}
		commandUsage(stderr, fs, cmd)
		if wantJSON {
			jsondoc.WriteError(stdout, fmt.Sprintf("%s: %v", cmd.name, err), errorKind(exitUsage))
		}
		return exitUsage
	}
	level, err := logLevel(o)
	if err != nil {
		fmt.Fprintf(stderr, "synban %s: %v\n", cmd.name, err)
		if o.json {
			jsondoc.WriteError(stdout, fmt.Sprintf("%s: %v", cmd.name, err), errorKind(exitUsage))
		}
		return exitUsage
	}
	hopts := &slog.HandlerOptions{Level: level}
	if o.logJSON {
		a.log = slog.New(slog.NewJSONHandler(stderr, hopts))
	} else {
		a.log = slog.New(slog.NewTextHandler(stderr, hopts))
	}
	err = cmd.run(ctx, a, o, positional)
	if err == nil {
		return exitOK
	}
	code, msg := exitFor(err), err.Error()
	if ctx.Err() != nil {
		// SIGINT or SIGTERM: whatever failed after it failed because of it
		// (a sampling window, a lock wait cut short). watch returns nil.
		a.log.Debug("interrupted", "cmd", cmd.name, "err", err)
		code, msg = exitFailure, "interrupted"
	}
	fmt.Fprintf(stderr, "synban %s: %s\n", cmd.name, msg)
	if o.json && !isReported(err) {
		jsondoc.WriteError(stdout, cmd.name+": "+msg, errorKind(code))
	}
	return code
}

// exitFor maps a command's error to its exit code.
func exitFor(err error) int {
	var ue usageError
	var pe *policy.Error
	var te *trust.Error
	var ie *engine.InputError
	switch {
	case errors.As(err, &ue), errors.As(err, &pe), errors.As(err, &te), errors.As(err, &ie):
		return exitUsage
	case errors.Is(err, engine.ErrLocked):
		return exitLocked
	}
	return exitFailure
}

// jsonAsked reports whether --json stands among args (before "--"), for
// the errors found before the flags are parsed.
func jsonAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

func findCommand(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// newFlagSet returns cmd's flag set, filling o.
func newFlagSet(cmd *command, stderr io.Writer, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("synban "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmd.setup(fs, o)
	// The flag package calls Usage itself on every parse error, -h included;
	// the usage is printed once instead: on stdout for --help, on stderr
	// after the error message otherwise.
	fs.Usage = func() {}
	return fs
}

// help is `synban help [COMMAND]`: the overview, or one command's usage.
func help(stdout, stderr io.Writer, cmds []*command, args []string) int {
	switch len(args) {
	case 0:
		usage(stdout, cmds)
		return exitOK
	case 1:
		cmd := findCommand(cmds, args[0])
		if cmd == nil {
			fmt.Fprintf(stderr, "synban help: unknown command %q (see synban --help)\n", args[0])
			return exitUsage
		}
		commandUsage(stdout, newFlagSet(cmd, stderr, &options{}), cmd)
		return exitOK
	}
	fmt.Fprintf(stderr, "synban help: takes at most one command, got %q\n", strings.Join(args, " "))
	return exitUsage
}

// commandUsage prints one command's usage and flags to w.
func commandUsage(w io.Writer, fs *flag.FlagSet, cmd *command) {
	fmt.Fprintf(w, "usage: synban %s [flags] %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func usage(w io.Writer, cmds []*command) {
	fmt.Fprintf(w, "synban %s: detect SYN and connection floods and ban their sources\n\nusage: synban COMMAND [flags]\n\ncommands:\n", buildVersion().Version)
	for _, c := range cmds {
		name := c.name
		if c.args != "" {
			name += " " + c.args
		}
		fmt.Fprintf(w, "  %-22s %s\n", name, c.summary)
	}
	fmt.Fprintf(w, "\nflags come after the command; 'synban help COMMAND' or 'synban COMMAND --help' lists them.\n"+
		"exit codes: 0 ok, 1 runtime failure, 2 bad input, 3 another run holds the lock\n")
}

func cmdVersion(_ context.Context, a *app, o *options, args []string) error {
	if len(args) > 0 {
		return badInput("version takes no arguments, got %q", strings.Join(args, " "))
	}
	if o.json {
		v := buildVersion()
		return jsondoc.Write(a.stdout, jsondoc.Version{Version: v.Version, Commit: v.Commit, Modified: v.Modified, Go: v.Go})
	}
	fmt.Fprintln(a.stdout, buildVersion())
	return nil
}

// parseInterspersed parses flags wherever they stand among the arguments
// ("synban ban 192.0.2.7 --for 1h" as well as "synban ban --for 1h 192.0.2.7");
// "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
