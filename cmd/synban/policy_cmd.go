package main

import (
	"context"
	"fmt"
	"io"

	"github.com/synban/synban/cmd/synban/internal/jsondoc"
	"github.com/synban/synban/policy"
)

// cmdPolicy is `synban policy default` (the embedded default policy, its
// comments included, verbatim) and `synban policy show [-c FILE]` (the
// effective policy with every default filled in, as TOML that check
// accepts). Both are read-only.
func cmdPolicy(_ context.Context, a *app, o *options, args []string) error {
	if len(args) != 1 {
		return badInput("policy takes one of default or show, got %d arguments", len(args))
	}
	var doc jsondoc.Policy
	switch args[0] {
	case "default":
		if o.config != "" {
			return badInput("policy default prints the embedded policy; -c is for policy show")
		}
		doc = jsondoc.Policy{Policy: policy.DefaultSource, TOML: string(policy.DefaultTOML())}
	case "show":
		p, err := loadPolicy(o)
		if err != nil {
			return err
		}
		text, err := policy.Marshal(p)
		if err != nil {
			return fmt.Errorf("policy show: %w", err)
		}
		doc = jsondoc.Policy{Policy: p.Source, TOML: string(text)}
	default:
		return badInput("policy: unknown %q: want default or show", args[0])
	}
	if o.json {
		return jsondoc.Write(a.stdout, doc)
	}
	_, err := io.WriteString(a.stdout, doc.TOML)
	return err
}
