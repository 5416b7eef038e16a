package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/templates"
)

// renderKind is one thing `synban render KIND` prints. Add new kinds to
// renderKinds.
type renderKind struct {
	name, summary string
	// run returns the files to print (Path "") or that it wrote (Path set).
	run func(ctx context.Context, a *app, o *options) ([]jsondoc.File, error)
}

// renderKinds lists the kinds of `synban render`, in usage order.
func renderKinds() []renderKind {
	return []renderKind{
		{name: "nft-include", summary: "nftables file to include from /etc/nftables.conf (synban's table, or its sets in nftables.mode = \"sets\"), without elements", run: renderNFTInclude},
		{name: "systemd", summary: "systemd units: synban.service + synban.timer (run every --every), synban-watch.service (watch)", run: renderSystemd},
		{name: "cron", summary: "an /etc/cron.d line running synban every --every (whole minutes)", run: renderCron},
	}
}

func renderKindNames() string {
	var names []string
	for _, k := range renderKinds() {
		names = append(names, k.name)
	}
	return strings.Join(names, ", ")
}

// cmdRender prints a file for the operator to install, built from the policy.
func cmdRender(ctx context.Context, a *app, o *options, args []string) error {
	if len(args) != 1 {
		return badInput("render takes one KIND (%s), got %d arguments", renderKindNames(), len(args))
	}
	for _, k := range renderKinds() {
		if k.name != args[0] {
			continue
		}
		files, err := k.run(ctx, a, o)
		if err != nil {
			return err
		}
		if o.json {
			return jsondoc.Write(a.stdout, jsondoc.RenderOf(k.name, files))
		}
		for i, f := range files {
			switch {
			case f.Path != "":
				fmt.Fprintf(a.stdout, "wrote %s\n", f.Path)
			case i > 0:
				fmt.Fprintf(a.stdout, "\n%s", f.Text)
			default:
				fmt.Fprint(a.stdout, f.Text)
			}
		}
		return nil
	}
	return badInput("render: unknown KIND %q: want one of %s", args[0], renderKindNames())
}

// renderNFTInclude prints the include file for /etc/nftables.conf: the
// policy's nftables structure without bans or allow entries, which the
// next run fills from the state store and the host's addresses.
func renderNFTInclude(_ context.Context, _ *app, o *options) ([]jsondoc.File, error) {
	p, err := loadPolicy(o)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := templates.NFTIncludeFor(&b, p); err != nil {
		return nil, err
	}
	return []jsondoc.File{{Name: "synban.nft", Text: b.String()}}, nil
}
