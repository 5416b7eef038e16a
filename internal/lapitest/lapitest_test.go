package lapitest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/synban/synban/internal/lapitest"
	"github.com/synban/synban/internal/netnstest"
)

func health(t *testing.T, c *http.Client, url string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"health", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if resp.StatusCode != 200 || body.Status != "up" {
		t.Fatalf("%s: HTTP %d status %q", url, resp.StatusCode, body.Status)
	}
	return nil
}

// Two host namespaces reach one LAPI over IPv4 and IPv6; once stopped it no
// longer answers, and a restart on the same database answers again.
func TestLAPIReachableFromTwoHosts(t *testing.T) {
	l := lapitest.Start(t)
	a, b := netnstest.New(t, "csa"), netnstest.New(t, "csb")
	la, lb := l.Attach(t, a), l.Attach(t, b)
	if la.LAPI4 == lb.LAPI4 {
		t.Fatalf("two links share address %s", la.LAPI4)
	}
	ca, cb := lapitest.HTTPClient(a), lapitest.HTTPClient(b)
	for _, u := range []string{la.URL4, la.URL6} {
		if err := health(t, ca, u); err != nil {
			t.Fatalf("host A: %v", err)
		}
	}
	for _, u := range []string{lb.URL4, lb.URL6} {
		if err := health(t, cb, u); err != nil {
			t.Fatalf("host B: %v", err)
		}
	}
	// Host A has no route to B's link: the namespaces are really separate.
	if err := health(t, ca, lb.URL4); err == nil {
		t.Fatalf("host A reached the LAPI through host B's link")
	}
	l.Stop()
	if err := health(t, ca, la.URL4); err == nil {
		t.Fatal("stopped LAPI still answers")
	}
	l.Restart()
	if err := health(t, ca, la.URL4); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	ds, err := l.Decisions()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 0 {
		t.Fatalf("fresh LAPI has decisions: %+v", ds)
	}
}
