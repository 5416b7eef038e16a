package templates

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/template"
	"time"

	"github.com/synban/synban/policy"
	"github.com/synban/synban/rules"
	"github.com/synban/synban/rules/route"
)

// routeBan is one ban as route.tmpl renders it.
type routeBan struct {
	Prefix  netip.Prefix
	Timeout time.Duration
	Reason  string
}

// routeSkip is a ban left out because it overlaps the allow list.
type routeSkip struct {
	Prefix, Allow netip.Prefix
}

// routeData is what route.tmpl renders.
type routeData struct {
	RS      *rules.Ruleset
	Type    string
	Proto   int
	Bans    []routeBan
	Skipped []routeSkip
}

// Route writes rs's bans as reject routes in ip(8) batch syntax, one
// `route replace TYPE PREFIX proto N` line per ban (IPv4 and IPv6 alike; ip
// infers the family from the address), runnable as `ip -batch -`. typ is the
// route type ("" means prohibit, or blackhole, unreachable) and proto the
// route protocol number (0 means route.DefaultProtocol), as the route backend
// uses them. Bans overlapping rs.Allow (which Ruleset.Validate refuses; a
// Ruleset built by hand may have them) are left out with a comment, as the
// route backend does, by the same test (Ruleset.AllowOverlap); an ignored SYN meter or connection cap is noted in a
// comment.
func Route(w io.Writer, rs *rules.Ruleset, typ string, proto int) error {
	if rs == nil {
		return errors.New("render routes: nil ruleset")
	}
	_, name, err := route.ParseType(typ)
	if err != nil {
		return fmt.Errorf("render routes: %w", err)
	}
	if proto == 0 {
		proto = route.DefaultProtocol
	}
	if proto < 5 || proto > 255 {
		return fmt.Errorf("render routes: protocol %d out of range 5..255", proto)
	}
	d := routeData{RS: rs, Type: name, Proto: proto}
	for _, b := range rs.Bans {
		p := policy.Canonical(b.Prefix)
		if !p.IsValid() {
			return fmt.Errorf("render routes: invalid ban prefix %v", b.Prefix)
		}
		if a, ok := rs.AllowOverlap(p); ok {
			d.Skipped = append(d.Skipped, routeSkip{Prefix: p, Allow: a})
			continue
		}
		d.Bans = append(d.Bans, routeBan{Prefix: p, Timeout: b.Timeout, Reason: rules.CommentSafe(b.Reason)})
	}
	t, err := template.New("route.tmpl").ParseFS(files, "route.tmpl")
	if err != nil {
		return fmt.Errorf("render routes: parse template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return fmt.Errorf("render routes: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("render routes: write: %w", err)
	}
	return nil
}

// RouteString is Route into a string.
func RouteString(rs *rules.Ruleset, typ string, proto int) (string, error) {
	var b strings.Builder
	if err := Route(&b, rs, typ, proto); err != nil {
		return "", err
	}
	return b.String(), nil
}
