package upstream

import (
	"testing"
	"time"
)

func TestStatusAlive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	var none *StatusReport
	if none.Alive(now) {
		t.Error("no status file counts as a running speaker")
	}
	for age, want := range map[time.Duration]bool{0: true, time.Second: true, StatusFreshFor - time.Millisecond: true, StatusFreshFor: false, time.Minute: false} {
		r := &StatusReport{Written: now.Add(-age)}
		if got := r.Alive(now); got != want {
			t.Errorf("status %s old: Alive = %v, want %v", age, got, want)
		}
	}
}
