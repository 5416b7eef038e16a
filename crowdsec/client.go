package crowdsec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Defaults for the zero values of Config.
const (
	// DefaultOrigin is the origin of the decisions synban pushes, and the
	// only origin it deletes.
	DefaultOrigin = "synban"
	// DefaultTimeout bounds one call, including a login it needs.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxResponseBytes bounds a response body: a startup stream of
	// 50,000 decisions is about 7 MB, so this allows some 450,000.
	DefaultMaxResponseBytes = 64 << 20
	// DefaultUserAgent identifies synban to the LAPI, which records the part
	// after the slash as the machine's version.
	DefaultUserAgent = "synban/1"
	// DefaultBatchSize is the number of alerts per POST /v1/alerts.
	DefaultBatchSize = 100
)

// maxErrorBody bounds how much of an error response is read for its message.
const maxErrorBody = 4 << 10

// ErrResponseTooLarge is wrapped in the *RequestError of a call whose
// response body exceeded Config.MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body exceeds the size limit")

// Config configures a Client. URL is required; MachineID and Password are
// needed for the machine calls (push, delete), BouncerKey for Stream.
type Config struct {
	// URL is the LAPI's base URL, such as http://10.0.0.1:8080/ (a path
	// prefix is kept; user info, query and fragment are refused).
	URL string
	// MachineID and Password are a watcher's login (cscli machines add).
	MachineID, Password string
	// BouncerKey is a bouncer's API key (cscli bouncers add).
	BouncerKey string
	// Origin is the origin of pushed decisions and the filter of deletes;
	// DefaultOrigin when empty.
	Origin string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
	// MaxResponseBytes bounds each response body; DefaultMaxResponseBytes
	// when zero.
	MaxResponseBytes int64
	// BatchSize is the number of alerts per POST; DefaultBatchSize when zero.
	BatchSize int
	// HTTPClient is used for requests when set (its own Timeout is left
	// alone; the per-call context does the bounding).
	HTTPClient *http.Client
	// UserAgent is sent with every request; DefaultUserAgent when empty.
	// It must have the form NAME/VERSION: crowdsec 1.4.6 refuses a machine
	// login whose user agent has no slash ("bad user agent").
	UserAgent string
	// Logger receives debug lines (logins, batches); slog.Default when nil.
	// It never sees a secret.
	Logger *slog.Logger
}

// Client talks to one LAPI. It is safe for concurrent use.
type Client struct {
	base *url.URL
	cfg  Config
	hc   *http.Client
	log  *slog.Logger

	mu    sync.Mutex
	token string // the machine JWT, empty until the first login
}

// New checks cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("crowdsec: LAPI URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("crowdsec: LAPI URL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("crowdsec: LAPI URL %q: no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("crowdsec: LAPI URL %q: credentials belong in files, not in the URL", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("crowdsec: LAPI URL %q: no query or fragment allowed", u.Redacted())
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if cfg.Origin == "" {
		cfg.Origin = DefaultOrigin
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	} else if name, version, ok := strings.Cut(cfg.UserAgent, "/"); !ok || name == "" || version == "" || strings.Contains(version, "/") {
		return nil, fmt.Errorf("crowdsec: user agent %q: want NAME/VERSION (the LAPI refuses logins otherwise)", cfg.UserAgent)
	}
	c := &Client{base: u, cfg: cfg, hc: cfg.HTTPClient, log: cfg.Logger}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c, nil
}

// Origin is the origin this client pushes and deletes.
func (c *Client) Origin() string { return c.cfg.Origin }

// APIError is an HTTP error status from the LAPI.
type APIError struct {
	Method   string // GET, POST, DELETE
	Endpoint string // the path, such as /v1/alerts (no query)
	Status   int    // the HTTP status code
	Message  string // the server's message, shortened, printable only
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("crowdsec LAPI %s %s: HTTP %d: %s", e.Method, e.Endpoint, e.Status, msg)
}

// Unauthorized reports whether the server refused the credentials (401 or
// 403): a bad machine password or bouncer key, or an expired token.
func (e *APIError) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// RequestError is a call that got no usable answer: the LAPI unreachable,
// the deadline passed, or the body too large or malformed. Err says which
// (errors.Is works with context.DeadlineExceeded, ErrResponseTooLarge,
// syscall.ECONNREFUSED, ...).
type RequestError struct {
	Method   string
	Endpoint string
	Err      error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("crowdsec LAPI %s %s: %v", e.Method, e.Endpoint, e.Err)
}

// Unwrap returns the cause.
func (e *RequestError) Unwrap() error { return e.Err }

type authKind int

const (
	authNone authKind = iota
	authMachine
	authBouncer
)

// call is one API call: the request parts and where the answer goes.
type call struct {
	method string
	path   string // relative to the base URL, without a leading slash
	query  url.Values
	body   []byte // JSON, nil for none
	auth   authKind
	out    any // decoded from a 2xx body when non-nil
}

func (k call) endpoint() string { return "/" + k.path }

// do runs k within the client's timeout. A machine call logs in first when
// it holds no token, and on 401 logs in again once and retries once.
func (c *Client) do(ctx context.Context, k call) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if k.auth != authMachine {
		return c.once(ctx, k, "")
	}
	tok, fresh := c.currentToken(), false
	if tok == "" {
		var err error
		if tok, err = c.login(ctx); err != nil {
			return err
		}
		fresh = true
	}
	err := c.once(ctx, k, tok)
	var ae *APIError
	if fresh || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return err
	}
	c.log.Debug("crowdsec: token refused, logging in again", "endpoint", k.endpoint())
	if tok, err = c.login(ctx); err != nil {
		return err
	}
	return c.once(ctx, k, tok)
}

func (c *Client) currentToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// once sends one request and decodes its answer.
func (c *Client) once(ctx context.Context, k call, token string) error {
	u := c.base.JoinPath(k.path)
	if len(k.query) > 0 {
		u.RawQuery = k.query.Encode()
	}
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, u.String(), body)
	if err != nil {
		return &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch k.auth {
	case authMachine:
		req.Header.Set("Authorization", "Bearer "+token)
	case authBouncer:
		req.Header.Set("X-Api-Key", c.cfg.BouncerKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL; the endpoint is enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &APIError{Method: k.method, Endpoint: k.endpoint(), Status: resp.StatusCode, Message: serverMessage(b)}
	}
	lr := &limitedReader{r: resp.Body, n: c.cfg.MaxResponseBytes}
	if k.out != nil {
		err = json.NewDecoder(lr).Decode(k.out)
	}
	if err == nil {
		// Drain what is left (normally a newline) so the connection is
		// reused, still within the limit.
		_, err = io.Copy(io.Discard, lr)
	}
	if lr.over {
		err = fmt.Errorf("%w (%d bytes)", ErrResponseTooLarge, c.cfg.MaxResponseBytes)
	} else if err != nil {
		err = fmt.Errorf("decode answer: %w", err)
	}
	if err != nil {
		return &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: err}
	}
	return nil
}

// serverMessage extracts {"message": ...} from an error body, or the body
// itself, shortened to one printable line.
func serverMessage(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	s := string(b)
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		s = m.Message
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.TrimSpace(s))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// limitedReader reads at most n bytes and sets over (returning
// ErrResponseTooLarge) when the source has more.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		k, err := l.r.Read(one[:])
		if k > 0 {
			l.over = true
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// Health asks GET /health and returns nil when the LAPI says it is up.
func (c *Client) Health(ctx context.Context) error {
	var out struct {
		Status string `json:"status"`
	}
	k := call{method: http.MethodGet, path: "health", out: &out}
	if err := c.do(ctx, k); err != nil {
		return err
	}
	if out.Status != "up" {
		return &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: fmt.Errorf("status %q, want \"up\"", out.Status)}
	}
	return nil
}

// Login logs the machine in (POST /v1/watchers/login) and keeps the JWT for
// the machine calls. Calling it is optional — they log in when needed — but
// it is how `check --online` tests the machine credentials.
func (c *Client) Login(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	_, err := c.login(ctx)
	return err
}

func (c *Client) login(ctx context.Context) (string, error) {
	if c.cfg.MachineID == "" || c.cfg.Password == "" {
		return "", fmt.Errorf("crowdsec: machine calls need a machine id and password")
	}
	in := struct {
		MachineID string   `json:"machine_id"`
		Password  string   `json:"password"`
		Scenarios []string `json:"scenarios"`
	}{c.cfg.MachineID, c.cfg.Password, []string{}}
	body, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("crowdsec: encode login: %w", err)
	}
	var out struct {
		Token  string `json:"token"`
		Expire string `json:"expire"`
	}
	k := call{method: http.MethodPost, path: "v1/watchers/login", body: body, out: &out}
	if err := c.once(ctx, k, ""); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", &RequestError{Method: k.method, Endpoint: k.endpoint(), Err: errors.New("answer has no token")}
	}
	c.mu.Lock()
	c.token = out.Token
	c.mu.Unlock()
	c.log.Debug("crowdsec: logged in", "machine", c.cfg.MachineID, "expire", out.Expire)
	return out.Token, nil
}
