// Package jsondoc is synban's --json contract (docs/json.md,
// docs/synban.schema.json): one type per document, one file per document,
// the conversions from engine's values to them, and Write, through which
// every command's --json output goes.
//
// Every document is one JSON object whose first key is "schema", the
// version Schema; durations are seconds as numbers (keys ending in
// _seconds), addresses and prefixes strings, lists never null, keys
// snake_case. A key has one type in every command: "sources" is always a
// list, a count of sources is "source_count". A failure is
// {"schema":N,"error":{...}}.
package jsondoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// Schema is the "schema" of every --json document. Raise it when a key is
// removed or changes type or meaning; adding a key keeps it.
const Schema = 1

// Write writes v, which must encode as a JSON object, as one indented
// document with "schema" as its first key.
func Write(w io.Writer, v any) error {
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	body := bytes.TrimSpace(raw.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return fmt.Errorf("encode JSON output: %T is not a JSON object", v)
	}
	var doc bytes.Buffer
	doc.WriteString(`{"schema":` + strconv.Itoa(Schema))
	if len(body) > 2 {
		doc.WriteByte(',')
	}
	doc.Write(body[1:])
	var out bytes.Buffer
	if err := json.Indent(&out, doc.Bytes(), "", "  "); err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// secs is a duration in the JSON contract: seconds, as a number.
func secs(d time.Duration) float64 { return d.Seconds() }

// nonNil returns s, or an empty list for nil: lists are never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// prefixStrings renders prefixes as strings, never null.
func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
