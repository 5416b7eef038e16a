package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synban/synban/rules"
)

var _ rules.Generationer = (*Backend)(nil)

// Generation returns the nftables ruleset generation id of the backend's
// network namespace (NFT_MSG_GETGEN). The kernel bumps it on every
// committed transaction that changes something, in any table, by any
// program: nft, another tool, synban itself. It does not change when set
// elements time out, nor when the packet path adds or updates elements of
// a dynamic set (the SYN meter, the connection cap): neither is a
// transaction. google/nftables v0.3.0 has no call for it, so the request
// goes over a netlink socket of our own (mdlayher/netlink), in the
// backend's namespace.
func (b *Backend) Generation(ctx context.Context) (uint32, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cfg := &netlink.Config{}
	if b.netns != "" {
		f, err := os.Open(b.netns)
		if err != nil {
			return 0, fmt.Errorf("nftables generation: open network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return 0, fmt.Errorf("nftables generation: netlink connection: %w", err)
	}
	defer conn.Close()
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	msgs, err := conn.Execute(req)
	if err != nil {
		return 0, fmt.Errorf("nftables generation: %w", err)
	}
	for _, m := range msgs {
		if gen, ok, err := decodeGen(m.Data); err != nil {
			return 0, fmt.Errorf("nftables generation: %w", err)
		} else if ok {
			return gen, nil
		}
	}
	return 0, errors.New("nftables generation: no generation id in the kernel's answer")
}

// decodeGen reads NFTA_GEN_ID from a NFT_MSG_NEWGEN message body (after
// the 4-byte nfgenmsg header).
func decodeGen(data []byte) (uint32, bool, error) {
	if len(data) < 4 {
		return 0, false, nil
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0, false, fmt.Errorf("decode generation message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var gen uint32
	found := false
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			gen, found = ad.Uint32(), true
		}
	}
	if err := ad.Err(); err != nil {
		return 0, false, fmt.Errorf("decode generation message: %w", err)
	}
	return gen, found, nil
}

// AppliedGeneration returns the generation the last successful Apply left
// the kernel at, and true only when that Apply's own commit (if any) is the
// only change between its read of the kernel and its end: then the kernel
// holds exactly what that Apply made of it at that generation. It is false
// before any Apply, after a failed one, and when anyone else committed in
// between (the caller must then not trust the generation).
func (b *Backend) AppliedGeneration() (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.appliedGen, b.appliedGenOK
}

// trackGeneration runs apply between two reads of the generation and
// records what AppliedGeneration reports. apply returns whether it sent a
// transaction. A transaction may leave the generation as it was (nothing
// in it changed anything); any other program's commit moves it further.
func (b *Backend) trackGeneration(ctx context.Context, apply func() (rules.Result, bool, error)) (rules.Result, error) {
	b.mu.Lock()
	b.appliedGen, b.appliedGenOK = 0, false
	b.mu.Unlock()
	before, gerr := b.Generation(ctx)
	res, committed, err := apply()
	if err != nil {
		return res, err
	}
	if gerr != nil {
		b.log.Debug("nftables generation unreadable; the next run reconciles in full", "err", gerr)
		return res, nil
	}
	after, gerr := b.Generation(ctx)
	if gerr != nil {
		b.log.Debug("nftables generation unreadable; the next run reconciles in full", "err", gerr)
		return res, nil
	}
	ok := after == before || committed && after == before+1
	b.mu.Lock()
	b.appliedGen, b.appliedGenOK = after, ok
	b.mu.Unlock()
	if !ok {
		b.log.Debug("the ruleset changed during the apply; the next run reconciles in full", "before", before, "after", after)
	}
	return res, nil
}
