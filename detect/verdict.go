package detect

import (
	"net/netip"
	"time"

	"github.com/synban/synban/policy"
)

// Verdict is the decision that one source address or prefix offends.
type Verdict struct {
	// Subject is the offender: a single address as a /32 or /128, or an
	// aggregated prefix such as a /24 or /64.
	Subject netip.Prefix
	// Rule names the policy rule crossed.
	Rule string
	// State is the TCP state the rule counts.
	State policy.State
	// Count is the peak count in the window (summed over sources for a prefix).
	Count int
	// Threshold is the threshold crossed.
	Threshold int
	// Hits is the number of samples in which the threshold was crossed, of Samples.
	Hits, Samples int
	// Sources is the number of distinct addresses behind a prefix verdict (1 otherwise).
	Sources int
	// BanFor is how long the ban should last.
	BanFor time.Duration
	// Reason is a one-line human-readable explanation.
	Reason string
	// Forced marks a manual ban made with `synban ban --force`, which may be
	// broader than the policy's minimum ban prefix length (never a /0).
	Forced bool
}

// Spared is an offender that the guard keeps from being banned.
type Spared struct {
	Verdict Verdict
	// Why names the protected prefix and why it is protected.
	Why string
	// By is the guard's entry that protects the subject (its prefix and the
	// kind of protection: "default gateway", "allow list", ...); zero when
	// the offender was spared for another reason (a spoofed flood).
	By policy.Protected
}

// Report is the outcome of Analyze.
type Report struct {
	// Verdicts are the offenders, worst (highest Count/Threshold) first.
	Verdicts []Verdict
	// Spared are offenders the guard protected.
	Spared []Spared
	// Sources is the number of distinct remote addresses seen in the window.
	Sources int
	// Samples is the number of samples analysed.
	Samples int
	// Malformed counts unparseable input over all samples.
	Malformed int
	// SparedUnlisted counts spared offenders left out of Spared: Detect
	// lists at most MaxForgedListed forged offenders of a spoofed flood (the
	// worst) and counts the rest here. Analyze and FilterSpoofed list every
	// one and leave it as it was (0).
	SparedUnlisted int
}

// SparedCount is the number of spared offenders, listed in Spared or not.
func (r *Report) SparedCount() int { return len(r.Spared) + r.SparedUnlisted }
