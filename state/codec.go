package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/synban/synban/policy"
)

// The store's binary encodings. Every value starts with a format byte so a
// later synban can change one without guessing; a value this synban cannot
// decode is an error naming the key, never a silently empty ban.

// codecVersion is the format byte of ban, record and applied values.
const codecVersion = 1

// Flags of an encoded ban or record.
const (
	flagForced    = 1 << 0
	flagSinceZero = 1 << 1
	flagUntilZero = 1 << 2
	flagsKnown    = flagForced | flagSinceZero | flagUntilZero
)

// prefixKey encodes a canonical prefix as a key that sorts as
// policy.ComparePrefixes does: family (4 before 6), address, length.
func prefixKey(p netip.Prefix) []byte { return appendPrefixKey(make([]byte, 0, 18), p) }

// appendPrefixKey appends p's key to k.
func appendPrefixKey(k []byte, p netip.Prefix) []byte {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return append(k, 4, b[0], b[1], b[2], b[3], byte(p.Bits()))
	}
	b := a.As16()
	k = append(k, 6)
	k = append(k, b[:]...)
	return append(k, byte(p.Bits()))
}

// decodePrefixKey is the inverse of prefixKey; it accepts only canonical
// prefixes (masked, IPv4 as 4 bytes, no zone).
func decodePrefixKey(k []byte) (netip.Prefix, error) {
	var a netip.Addr
	switch {
	case len(k) == 6 && k[0] == 4:
		a = netip.AddrFrom4([4]byte(k[1:5]))
	case len(k) == 18 && k[0] == 6:
		a = netip.AddrFrom16([16]byte(k[1:17]))
	default:
		return netip.Prefix{}, fmt.Errorf("key %x is not an encoded prefix", k)
	}
	bits := int(k[len(k)-1])
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("key %x: prefix length %d over %d", k, bits, a.BitLen())
	}
	p := netip.PrefixFrom(a, bits)
	if p != policy.Canonical(p) {
		return netip.Prefix{}, fmt.Errorf("key %x: %s is not in canonical form", k, p)
	}
	return p, nil
}

// stampLen is the length of a time in an expiry index key.
const stampLen = 12

// expiryKey is a ban's key in the expiry index: its end (seconds since
// 1970 with the sign bit flipped, then nanoseconds, big-endian, so that
// the bytes sort as the times; all zero for a ban that does not end, which
// sorts first) and its prefix key.
func expiryKey(until time.Time, pk []byte) []byte {
	k := make([]byte, stampLen, stampLen+len(pk))
	if !until.IsZero() {
		putStamp(k, until)
	}
	return append(k, pk...)
}

// putStamp writes the stampLen bytes of t's expiry key.
func putStamp(k []byte, t time.Time) {
	binary.BigEndian.PutUint64(k, uint64(t.Unix())^1<<63)
	binary.BigEndian.PutUint32(k[8:], uint32(t.Nanosecond()))
}

// appendTime encodes t as seconds and nanoseconds since 1970: any
// time.Time, not only those of int64 nanoseconds (1678-2262).
func appendTime(buf []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(buf, t.Unix()), uint64(t.Nanosecond()))
}

// encodeBan encodes b without its prefix (the key holds it).
func encodeBan(b *Ban) []byte {
	return appendBan(make([]byte, 0, 48+len(b.Reason)+len(b.Rule)+len(b.Backend)+len(b.Origin)), b)
}

// appendBan appends b's encoding to buf.
func appendBan(buf []byte, b *Ban) []byte {
	var flags byte
	if b.Forced {
		flags |= flagForced
	}
	if b.Since.IsZero() {
		flags |= flagSinceZero
	}
	if b.Until.IsZero() {
		flags |= flagUntilZero
	}
	buf = append(buf, codecVersion, flags)
	if !b.Since.IsZero() {
		buf = appendTime(buf, b.Since)
	}
	if !b.Until.IsZero() {
		buf = appendTime(buf, b.Until)
	}
	buf = binary.AppendUvarint(buf, b.Drops)
	for _, s := range [...]string{b.Reason, b.Rule, b.Backend, b.Origin} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return buf
}

// reader decodes the fields of one value, remembering the first error.
type reader struct {
	b   []byte
	err error
	// strs, when not nil, interns the strings decoded: 100,000 bans
	// loaded share a handful of reasons, rules and backends.
	strs map[string]string
}

// maxInterned bounds an interning map (reasons that name counts vary).
const maxInterned = 4096

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = errors.New(what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail("truncated before " + what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad or truncated " + what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad or truncated " + what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) time(what string) time.Time {
	sec := r.varint(what)
	ns := r.uvarint(what)
	if ns >= 1e9 {
		r.fail(what + ": nanoseconds out of range")
	}
	if r.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(ns))
	if t.IsZero() {
		r.fail(what + ": zero time not flagged as zero")
	}
	return t
}

func (r *reader) string(what string) string {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("truncated " + what)
		return ""
	}
	raw := r.b[:n]
	r.b = r.b[n:]
	if s, ok := r.strs[string(raw)]; ok {
		return s
	}
	s := string(raw)
	if !utf8.ValidString(s) {
		r.fail(what + " is not UTF-8")
		return ""
	}
	if r.strs != nil && len(r.strs) < maxInterned {
		r.strs[s] = s
	}
	return s
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes of trailing data", len(r.b)))
	}
	return r.err
}

// DecodeBan decodes one stored ban from its key (the prefix) and value, as
// the store holds them. It is exported for the fuzz target: any bytes
// either decode to a ban with a valid canonical prefix or return an error.
func DecodeBan(key, val []byte) (Ban, error) {
	return decodeBan(key, val, nil)
}

// decodeBan is DecodeBan interning its strings in strs (nil: none).
func decodeBan(key, val []byte, strs map[string]string) (Ban, error) {
	var b Ban
	if err := decodeBanInto(&b, key, val, strs); err != nil {
		return Ban{}, err
	}
	return b, nil
}

// decodeBanInto is decodeBan writing into *b (which it overwrites whole),
// so that a load of 100,000 bans decodes each straight into its slot.
func decodeBanInto(b *Ban, key, val []byte, strs map[string]string) error {
	p, err := decodePrefixKey(key)
	if err != nil {
		return err
	}
	*b = Ban{Prefix: p}
	r := reader{b: val, strs: strs}
	if v := r.byte("format"); r.err == nil && v != codecVersion {
		return fmt.Errorf("ban %s: format %d, this synban reads format %d", p, v, codecVersion)
	}
	flags := r.byte("flags")
	if flags&^flagsKnown != 0 {
		r.fail(fmt.Sprintf("unknown flags %#x", flags))
	}
	b.Forced = flags&flagForced != 0
	if flags&flagSinceZero == 0 {
		b.Since = r.time("since")
	}
	if flags&flagUntilZero == 0 {
		b.Until = r.time("until")
	}
	b.Drops = r.uvarint("drops")
	b.Reason = r.string("reason")
	b.Rule = r.string("rule")
	b.Backend = r.string("backend")
	b.Origin = r.string("origin")
	if err := r.end(); err != nil {
		return fmt.Errorf("ban %s: %w", p, err)
	}
	return nil
}

// encodeRecord encodes r without its prefix.
func encodeRecord(r *Record) []byte {
	buf := make([]byte, 0, 32)
	var flags byte
	if r.LastBan.IsZero() {
		flags |= flagSinceZero
	}
	buf = append(buf, codecVersion, flags)
	buf = binary.AppendVarint(buf, int64(r.Bans))
	if !r.LastBan.IsZero() {
		buf = appendTime(buf, r.LastBan)
	}
	return binary.AppendVarint(buf, int64(r.LastFor))
}

// DecodeRecord decodes one history record from its key and value.
func DecodeRecord(key, val []byte) (Record, error) {
	p, err := decodePrefixKey(key)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Prefix: p}
	r := reader{b: val}
	if v := r.byte("format"); r.err == nil && v != codecVersion {
		return Record{}, fmt.Errorf("history %s: format %d, this synban reads format %d", p, v, codecVersion)
	}
	flags := r.byte("flags")
	if flags&^flagSinceZero != 0 {
		r.fail(fmt.Sprintf("unknown flags %#x", flags))
	}
	rec.Bans = int(r.varint("count"))
	if flags&flagSinceZero == 0 {
		rec.LastBan = r.time("last ban")
	}
	rec.LastFor = time.Duration(r.varint("last duration"))
	if err := r.end(); err != nil {
		return Record{}, fmt.Errorf("history %s: %w", p, err)
	}
	return rec, nil
}

// encodeApplied encodes a.
func encodeApplied(a *Applied) []byte {
	buf := []byte{codecVersion}
	buf = binary.AppendUvarint(buf, uint64(len(a.Backend)))
	buf = append(buf, a.Backend...)
	buf = binary.AppendUvarint(buf, uint64(a.Generation))
	buf = binary.AppendUvarint(buf, uint64(len(a.Ruleset)))
	buf = append(buf, a.Ruleset...)
	return binary.AppendVarint(buf, int64(a.Bans))
}

func decodeApplied(val []byte) (*Applied, error) {
	r := reader{b: val}
	if v := r.byte("format"); r.err == nil && v != codecVersion {
		return nil, fmt.Errorf("applied record: format %d, this synban reads format %d", v, codecVersion)
	}
	a := &Applied{Backend: r.string("backend")}
	g := r.uvarint("generation")
	if g > 1<<32-1 {
		r.fail("generation over 32 bits")
	}
	a.Generation = uint32(g)
	a.Ruleset = r.string("ruleset")
	a.Bans = int(r.varint("bans"))
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("applied record: %w", err)
	}
	return a, nil
}

// banEqual reports whether a and b store the same bytes.
func banEqual(a, b *Ban) bool {
	return a.Prefix == b.Prefix && timeEqual(a.Since, b.Since) && timeEqual(a.Until, b.Until) &&
		a.Reason == b.Reason && a.Rule == b.Rule && a.Backend == b.Backend && a.Forced == b.Forced &&
		a.Drops == b.Drops && a.Origin == b.Origin
}

func recordEqual(a, b *Record) bool {
	return a.Prefix == b.Prefix && a.Bans == b.Bans && timeEqual(a.LastBan, b.LastBan) && a.LastFor == b.LastFor
}

// timeEqual compares as the encoding stores: the instant, not the zone.
func timeEqual(a, b time.Time) bool { return a.Equal(b) }
