// Package strictjson decodes the JSON files synban keeps in its state
// directory (the legacy state.json, the counters, the upstream hand-off and
// status files) the one strict way: unknown fields refused, nothing after
// the document, and a syntax or type error placed on its line.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Decode decodes the single JSON document in data into v. Unknown fields
// and trailing data are errors; a syntax or type error names its line.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return where(data, err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// where prefixes err with the line of data it points at, when it points.
func where(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return err
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	return fmt.Errorf("line %d: %w", line, err)
}
