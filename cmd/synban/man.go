package main

import (
	"context"
	"fmt"
	"github.com/synban/synban/cmd/internal/handover"
	"io"
	"strings"
)

// cmdMan prints synban's manual page in roff (man -l - reads it), generated
// from the same command definitions and FlagSets as the usage text and the
// shell completions: `synban man | man -l -`.
func cmdMan(_ context.Context, a *app, _ *options, args []string) error {
	if err := noArgs("man", args); err != nil {
		return err
	}
	return writeMan(a.stdout, cliModel())
}

// roff escapes text for a roff line: backslashes, dashes (which roff would
// hyphenate as a minus otherwise), and a leading dot or quote.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func writeMan(w io.Writer, cmds []cliCommand) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH SYNBAN 8 \"\" \"synban %s\" \"System Administration\"\n", roff(buildVersion().Version))
	b.WriteString(".SH NAME\nsynban \\- detect SYN and connection floods and ban their sources\n")
	b.WriteString(".SH SYNOPSIS\n.B synban\n.I COMMAND\n[\\fIflags\\fR] [\\fIarguments\\fR]\n")
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString("synban samples the kernel's connection tables, decides which sources are flooding the host, " +
		"and bans them through nftables, iptables and ipset, or reject routes, as one TOML policy says. " +
		"Flags come after the command, before or among its arguments; each flag may be written with one dash or two.\n")
	b.WriteString(".SH COMMANDS\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roff(c.name))
		if c.args != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roff(c.args))
		}
		fmt.Fprintf(&b, "\n%s\n", roff(c.summary))
	}
	b.WriteString(".SH FLAGS\n")
	for _, c := range cmds {
		if len(c.flags) == 0 {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n", roff("synban "+c.name))
		for _, f := range c.flags {
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roff(dash(f.name)))
			if !f.isBool {
				fmt.Fprintf(&b, " \\fI%s\\fR", roff(f.meta))
			}
			usage := f.usage
			if f.def != "" && !(f.isBool && f.def == "false") {
				usage += " (default " + f.def + ")"
			}
			fmt.Fprintf(&b, "\n%s\n", roff(usage))
		}
	}
	b.WriteString(".SH EXIT STATUS\n.TP\n0\nsuccess\n.TP\n1\nruntime failure\n.TP\n2\n" +
		"bad input (policy, arguments, files); nothing in the kernel changed\n.TP\n3\nanother run holds the state lock\n")
	b.WriteString(".SH FILES\n.TP\n/var/lib/synban\nthe default state directory (\\fB\\-\\-state\\-dir\\fR)\n")
	b.WriteString(".TP\n" + roff(handover.LibexecDir+"/"+handover.Binary) + "\nthe upstream BGP speaker that \\fBsynban upstream\\fR hands over to (one next to synban comes first)\n")
	b.WriteString(".SH SEE ALSO\n.BR nft (8),\n.BR iptables (8),\n.BR ipset (8),\n.BR ip\\-route (8)\n")
	_, err := io.WriteString(w, b.String())
	return err
}
