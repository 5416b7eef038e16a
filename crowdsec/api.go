package crowdsec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Scopes of the decisions synban handles, spelled as the LAPI stores them.
const (
	ScopeIP    = "Ip"
	ScopeRange = "Range"
)

// Alert is one alert for POST /v1/alerts: only the fields the LAPI requires
// and the decisions it carries.
type Alert struct {
	Scenario        string          `json:"scenario"`
	ScenarioHash    string          `json:"scenario_hash"`
	ScenarioVersion string          `json:"scenario_version"`
	Message         string          `json:"message"`
	EventsCount     int32           `json:"events_count"`
	StartAt         string          `json:"start_at"`
	StopAt          string          `json:"stop_at"`
	Capacity        int32           `json:"capacity"`
	Leakspeed       string          `json:"leakspeed"`
	Simulated       bool            `json:"simulated"`
	Events          []struct{}      `json:"events"`
	Source          Source          `json:"source"`
	Decisions       []AlertDecision `json:"decisions"`
}

// Source is the alert's source.
type Source struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
}

// AlertDecision is one decision carried by an Alert.
type AlertDecision struct {
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// Ban is what synban pushes: a ban of one prefix for a duration.
type Ban struct {
	// Prefix is an address (/32, /128: scope Ip) or a range (scope Range).
	Prefix netip.Prefix
	// Duration is the ban's remaining time; rounded up to whole seconds.
	Duration time.Duration
	// Scenario names the rule, such as synban/syn-flood.
	Scenario string
	// Message says why, with the counts.
	Message string
	// Events is the number of events (for example half-open connections)
	// behind the ban.
	Events int
	// Start and Stop bound the observation; both default to now.
	Start, Stop time.Time
}

// ScopeValue returns the LAPI scope and value of p: Ip and the address for
// a single address, Range and the masked prefix otherwise. IPv4-mapped IPv6
// is turned into IPv4.
func ScopeValue(p netip.Prefix) (scope, value string, err error) {
	p, err = normalize(p)
	if err != nil {
		return "", "", err
	}
	if p.IsSingleIP() {
		return ScopeIP, p.Addr().String(), nil
	}
	return ScopeRange, p.String(), nil
}

// normalize checks p, unmaps IPv4-mapped IPv6 and masks it.
func normalize(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %v", p)
	}
	a := p.Addr()
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %v has a zone", p)
	}
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %v: IPv4-mapped with fewer than 96 bits", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// NewAlert makes the alert for one ban: one decision of type ban with the
// client's origin, the ban's scope, value, duration and scenario.
func (c *Client) NewAlert(b Ban) (Alert, error) {
	scope, value, err := ScopeValue(b.Prefix)
	if err != nil {
		return Alert{}, fmt.Errorf("crowdsec: ban: %w", err)
	}
	if b.Duration <= 0 {
		return Alert{}, fmt.Errorf("crowdsec: ban of %s: duration %s is not positive", value, b.Duration)
	}
	if b.Scenario == "" {
		return Alert{}, fmt.Errorf("crowdsec: ban of %s: no scenario", value)
	}
	now := time.Now().UTC()
	start, stop := b.Start, b.Stop
	if start.IsZero() {
		start = now
	}
	if stop.IsZero() {
		stop = now
	}
	events := int32(min(max(b.Events, 0), 1<<31-1))
	dur := (b.Duration + time.Second - 1).Truncate(time.Second)
	return Alert{
		Scenario:        b.Scenario,
		ScenarioHash:    "",
		ScenarioVersion: "",
		Message:         b.Message,
		EventsCount:     events,
		StartAt:         start.UTC().Format(time.RFC3339),
		StopAt:          stop.UTC().Format(time.RFC3339),
		Leakspeed:       "0",
		Events:          []struct{}{},
		Source:          Source{Scope: scope, Value: value},
		Decisions: []AlertDecision{{
			Origin:   c.cfg.Origin,
			Type:     "ban",
			Scope:    scope,
			Value:    value,
			Duration: dur.String(),
			Scenario: b.Scenario,
		}},
	}, nil
}

// PushBans sends one alert per ban, BatchSize alerts per request, and
// returns the ids of the alerts the LAPI created. On an error the ids of
// the batches already accepted are returned with it.
func (c *Client) PushBans(ctx context.Context, bans []Ban) ([]string, error) {
	alerts := make([]Alert, 0, len(bans))
	for _, b := range bans {
		a, err := c.NewAlert(b)
		if err != nil {
			return nil, err
		}
		alerts = append(alerts, a)
	}
	return c.PushAlerts(ctx, alerts)
}

// PushAlerts sends alerts (POST /v1/alerts), BatchSize per request, each
// request with its own timeout, and returns the created alert ids.
func (c *Client) PushAlerts(ctx context.Context, alerts []Alert) ([]string, error) {
	var ids []string
	for start := 0; start < len(alerts); start += c.cfg.BatchSize {
		batch := alerts[start:min(start+c.cfg.BatchSize, len(alerts))]
		body, err := json.Marshal(batch)
		if err != nil {
			return ids, fmt.Errorf("crowdsec: encode alerts: %w", err)
		}
		var out []string
		k := call{method: http.MethodPost, path: "v1/alerts", body: body, auth: authMachine, out: &out}
		if err := c.do(ctx, k); err != nil {
			return ids, err
		}
		ids = append(ids, out...)
		c.log.Debug("crowdsec: pushed alerts", "count", len(batch), "ids", len(out))
	}
	return ids, nil
}

// DeleteDecisions deletes the decisions of this client's origin on p
// (DELETE /v1/decisions?ip=ADDR or ?range=PREFIX, and origin=ORIGIN, so
// decisions others made on the same address stay). It returns how many the
// LAPI deleted.
func (c *Client) DeleteDecisions(ctx context.Context, p netip.Prefix) (int, error) {
	scope, value, err := ScopeValue(p)
	if err != nil {
		return 0, fmt.Errorf("crowdsec: delete: %w", err)
	}
	q := url.Values{"origin": {c.cfg.Origin}}
	if scope == ScopeIP {
		q.Set("ip", value)
	} else {
		q.Set("range", value)
	}
	return c.deleteCall(ctx, call{method: http.MethodDelete, path: "v1/decisions", query: q, auth: authMachine})
}

// DeleteDecision deletes one decision by its id (DELETE /v1/decisions/{id}).
func (c *Client) DeleteDecision(ctx context.Context, id int64) (int, error) {
	return c.deleteCall(ctx, call{method: http.MethodDelete, path: "v1/decisions/" + strconv.FormatInt(id, 10), auth: authMachine})
}

func (c *Client) deleteCall(ctx context.Context, k call) (int, error) {
	var out struct {
		NbDeleted json.RawMessage `json:"nbDeleted"`
	}
	k.out = &out
	if err := c.do(ctx, k); err != nil {
		return 0, err
	}
	// 1.4.6 sends the count as a string ("1"); accept a number too.
	s := strings.Trim(string(out.NbDeleted), `"`)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: fmt.Errorf("nbDeleted %q is not a count", s)}
	}
	return n, nil
}

// StreamOptions selects what GET /v1/decisions/stream returns.
type StreamOptions struct {
	// Startup asks for every active decision; otherwise the LAPI answers
	// with what changed since this bouncer's previous pull.
	Startup bool
	// Origins keeps only decisions of these origins (crowdsec, cscli,
	// CAPI, lists, synban, ...); all when empty.
	Origins []string
	// Scopes keeps only these scopes; the LAPI's default (ip, range) when
	// empty.
	Scopes []string
	// ScenariosContaining keeps decisions whose scenario contains one of
	// these words; ScenariosNotContaining drops those containing one.
	ScenariosContaining, ScenariosNotContaining []string
}

// Decision is one decision of the stream, parsed.
type Decision struct {
	ID       int64
	Origin   string
	Type     string
	Scope    string
	Value    string
	Scenario string
	// Prefix is Value as a prefix (/32 or /128 for scope Ip).
	Prefix netip.Prefix
	// Duration is the time left: positive for an active decision,
	// negative (or zero) for a deleted or expired one.
	Duration time.Duration
}

// Skipped is a decision of the stream that could not be used.
type Skipped struct {
	ID       int64
	Scope    string
	Value    string
	Duration string
	Reason   string
}

// maxSkippedExamples bounds Stream.SkippedExamples.
const maxSkippedExamples = 8

// Stream is one answer of the decision stream.
type Stream struct {
	New     []Decision
	Deleted []Decision
	// Skipped counts decisions with an unparsable value, scope or
	// duration; SkippedExamples holds the first few, for a log line.
	Skipped         int
	SkippedExamples []Skipped
}

type wireDecision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Scenario string `json:"scenario"`
	Duration string `json:"duration"`
}

type wireStream struct {
	New     []wireDecision `json:"new"`
	Deleted []wireDecision `json:"deleted"`
}

// Stream pulls the decision stream as a bouncer (X-Api-Key).
func (c *Client) Stream(ctx context.Context, o StreamOptions) (*Stream, error) {
	if c.cfg.BouncerKey == "" {
		return nil, fmt.Errorf("crowdsec: the decision stream needs a bouncer key")
	}
	q := url.Values{"startup": {strconv.FormatBool(o.Startup)}}
	for name, list := range map[string][]string{
		"origins":                  o.Origins,
		"scopes":                   o.Scopes,
		"scenarios_containing":     o.ScenariosContaining,
		"scenarios_not_containing": o.ScenariosNotContaining,
	} {
		if len(list) > 0 {
			q.Set(name, strings.Join(list, ","))
		}
	}
	var w wireStream
	if err := c.do(ctx, call{method: http.MethodGet, path: "v1/decisions/stream", query: q, auth: authBouncer, out: &w}); err != nil {
		return nil, err
	}
	return parseStream(&w), nil
}

// DecodeStream decodes a stream answer as the LAPI sends it (for tests and
// benchmarks of the decoding alone).
func DecodeStream(b []byte) (*Stream, error) {
	var w wireStream
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("crowdsec: decode stream: %w", err)
	}
	return parseStream(&w), nil
}

func parseStream(w *wireStream) *Stream {
	s := &Stream{New: make([]Decision, 0, len(w.New)), Deleted: make([]Decision, 0, len(w.Deleted))}
	for _, list := range []struct {
		in  []wireDecision
		out *[]Decision
	}{{w.New, &s.New}, {w.Deleted, &s.Deleted}} {
		for i := range list.in {
			d, err := parseDecision(&list.in[i])
			if err != nil {
				s.Skipped++
				if len(s.SkippedExamples) < maxSkippedExamples {
					wd := &list.in[i]
					s.SkippedExamples = append(s.SkippedExamples, Skipped{
						ID: wd.ID, Scope: wd.Scope, Value: wd.Value, Duration: wd.Duration, Reason: err.Error(),
					})
				}
				continue
			}
			*list.out = append(*list.out, d)
		}
	}
	return s
}

func parseDecision(w *wireDecision) (Decision, error) {
	p, err := ParseValue(w.Scope, w.Value)
	if err != nil {
		return Decision{}, err
	}
	dur, err := time.ParseDuration(w.Duration)
	if err != nil {
		return Decision{}, fmt.Errorf("duration %q: %w", w.Duration, err)
	}
	return Decision{
		ID: w.ID, Origin: w.Origin, Type: w.Type, Scope: w.Scope, Value: w.Value,
		Scenario: w.Scenario, Prefix: p, Duration: dur,
	}, nil
}

// ParseValue turns a decision's scope and value into a prefix: scope Ip (any
// case) takes an address and gives /32 or /128, scope Range takes a prefix
// and gives it masked; IPv4-mapped IPv6 becomes IPv4. Other scopes, zones
// and malformed values are errors.
func ParseValue(scope, value string) (netip.Prefix, error) {
	switch {
	case strings.EqualFold(scope, ScopeIP):
		a, err := netip.ParseAddr(value)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("scope Ip: value %q is not an address", value)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("scope Ip: value %q has a zone", value)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	case strings.EqualFold(scope, ScopeRange):
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("scope Range: value %q is not a prefix", value)
		}
		p, err = normalize(p)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("scope Range: %w", err)
		}
		return p, nil
	default:
		return netip.Prefix{}, fmt.Errorf("scope %q is not Ip or Range", scope)
	}
}
