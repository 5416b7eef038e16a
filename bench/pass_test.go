package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synban/synban/state"
)

func TestInitClock(t *testing.T) {
	// Lines as Go 1.26 prints them, with a program's own output and a
	// runtime message between them.
	trace := `init internal/bytealg @0 ms, 0 ms clock, 0 bytes, 0 allocs
init runtime @0.50 ms, 0.016 ms clock, 0 bytes, 0 allocs
synban dev (go1.26.8 linux/amd64)
init google.golang.org/grpc @8.1 ms, 1.25 ms clock, 120344 bytes, 1203 allocs
  init main @10 ms, 0.007 ms clock, 9864 bytes, 58 allocs
runtime: note: something else
`
	total, n, err := initClock(trace)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("packages = %d, want 4", n)
	}
	if want := 1273 * time.Microsecond; total != want {
		t.Errorf("total = %v, want %v", total, want)
	}
	if _, _, err := initClock("synban dev\n"); err == nil {
		t.Error("no inittrace lines: want an error")
	}
	if _, _, err := initClock("init x @1 ms, fast ms clock, 0 bytes, 0 allocs\n"); err == nil {
		t.Error("a clock that is not a number: want an error")
	}
}

func TestMedianAndBans(t *testing.T) {
	if got := median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("odd median = %v", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("even median = %v", got)
	}
	if got := median[int64](nil); got != 0 {
		t.Errorf("empty median = %v", got)
	}
	var bans []state.Ban
	for _, p := range []string{"10.202.0.0/24", "10.202.1.0/24", "10.202.2.7/32"} {
		bans = append(bans, state.Ban{Prefix: netip.MustParsePrefix(p)})
	}
	if got, want := describeBans(bans), "2 × /24 + 1 × /32"; got != want {
		t.Errorf("describeBans = %q, want %q", got, want)
	}
}

func TestVethNames(t *testing.T) {
	def, pass := &namespaces{}, &namespaces{prefix: "sbpass"}
	if def.namePrefix() != "sbbench" || pass.namePrefix() != "sbpass" {
		t.Errorf("prefixes %q %q", def.namePrefix(), pass.namePrefix())
	}
	for _, n := range []string{def.vethName("v"), pass.vethName("a")} {
		if len(n) > 15 {
			t.Errorf("veth name %q is longer than the kernel's 15 bytes", n)
		}
	}
	if v := pass.vethName("v"); v[:7] != "sbpassv" {
		t.Errorf("pass veth %q", v)
	}
}

func TestShortenShapes(t *testing.T) {
	in := " 2911.11kB 17.64% 17.64%  2911.11kB 17.64%  github.com/synban/synban/detect.(*chunked[go.shape.struct { detect.addr [16]uint8; detect.first detect.addrRecord }]).add"
	want := " 2911.11kB 17.64% 17.64%  2911.11kB 17.64%  github.com/synban/synban/detect.(*chunked[…]).add"
	if got := shortenShapes(in); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	two := "a.f[go.shape.int].g[go.shape.[]uint8]"
	if got := shortenShapes(two); got != "a.f[…].g[…]" {
		t.Errorf("two: %q", got)
	}
	if got := shortenShapes("a.f[go.shape.int"); got != "a.f[go.shape.int" {
		t.Errorf("unbalanced: %q", got)
	}
	if got := shortenShapes("runtime.mallocgc"); got != "runtime.mallocgc" {
		t.Errorf("plain: %q", got)
	}
}
