package detect

import "context"

// Sampler reads the kernel's connection table once per call.
type Sampler interface {
	// Name identifies the sampler in samples and reports ("procfs",
	// "sockdiag", "conntrack").
	Name() string
	// Sample takes one reading. Unparseable entries are counted in the
	// Sample; an error means no reading could be taken.
	Sample(ctx context.Context) (Sample, error)
}

// ProcFS is a Sampler.
var _ Sampler = ProcFS{}
