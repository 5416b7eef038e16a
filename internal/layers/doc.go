// Package layers holds no code: its test keeps the low packages low. The
// policy, the compiler (rules), the detector, the state store and the
// templates must link no BGP, gRPC or protobuf package, and the compiler no
// conntrack client, so that every backend and every tool built on them stays
// small; engine is where the layers meet. The BGP speaker (GoBGP, gRPC)
// is linked only into its own binary, cmd/synban-speaker: neither the engine
// nor the synban command may link it.
package layers
