package nft

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/synban/synban/internal/netnstest"
	"github.com/synban/synban/templates"
)

// BenchmarkApply10k and BenchmarkApply100k time one Apply of that many bans
// into a fresh namespace; BenchmarkNFTFile10k/100k time `nft -f` of the same
// Ruleset rendered by templates.NFT, for comparison.
func BenchmarkApply10k(b *testing.B)  { benchApply(b, 10000) }
func BenchmarkApply100k(b *testing.B) { benchApply(b, 100000) }

// BenchmarkNFTFile10k times `nft -f` of 10,000 bans rendered by templates.NFT.
func BenchmarkNFTFile10k(b *testing.B) { benchNFTFile(b, 10000) }

// BenchmarkNFTFile100k times `nft -f` of 100,000 bans rendered by templates.NFT.
func BenchmarkNFTFile100k(b *testing.B) { benchNFTFile(b, 100000) }

func benchApply(b *testing.B, n int) {
	rs := bigRuleset(n)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := netnstest.New(b, "bench")
		be, err := New(Options{NetNS: ns.Path()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := be.Apply(context.Background(), rs)
		if err != nil {
			b.Fatal(err)
		}
		if res.Added != n {
			b.Fatalf("Added %d, want %d", res.Added, n)
		}
	}
}

func benchNFTFile(b *testing.B, n int) {
	netnstest.RequireCommand(b, "nft")
	script, err := templates.NFTString(bigRuleset(n), "benchmark")
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "synban.nft")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := netnstest.New(b, "benchf")
		b.StartTimer()
		ns.MustRun("nft", "-f", file)
	}
}
