package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on the shape of a policy's TOML text, checked by a cheap scan before
// the text reaches the TOML decoder: the decoder's cost grows with the square
// of the nesting depth (10,000 nested inline tables take ~18 s and ~11 GB, a
// [a.a.a…] header of 10,000 parts ~1.4 GiB), and a policy needs neither.
const (
	// maxNesting bounds how deep tables, arrays and inline tables nest:
	// each part of a table header or dotted key counts one level, each
	// array or inline table one more.
	maxNesting = 16
	// maxKeyParts bounds the parts of one dotted key or table header.
	maxKeyParts = 16
)

// The toml package (BurntSushi/toml v1.6.0) keeps each key's line in
// MetaData, but unexported (keyInfo, used only in its own errors), and keyed
// by the dotted key alone: every [[rule]] element shares "rule.threshold",
// and array elements have none. So the positions of keys come from this
// scanner, which reads the text once for both the limits and the positions.

// position is a 1-based line and column in a policy file.
type position struct{ line, col int }

// positions maps key paths ("meter.rate", "rule[1].threshold",
// "allow.addresses[2]", table headers "meter", "rule[1]") to where they
// first appear in the file.
type positions map[string]position

// lookup returns the position of key, or of its nearest enclosing key or
// table that appears in the file (a defaulted key is reported at its table),
// and whether key itself appears.
func (ps positions) lookup(key string) (position, bool) {
	if p, ok := ps[key]; ok {
		return p, true
	}
	for key != "" {
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
		if p, ok := ps[key]; ok {
			return p, false
		}
	}
	return position{}, false
}

// has reports whether key itself appears in the file.
func (ps positions) has(key string) bool {
	_, ok := ps[key]
	return ok
}

// scan reads src once. It checks that tables, arrays and inline tables nest
// at most maxNesting deep and that no key or table header has more than
// maxKeyParts dotted parts, returning an *Error naming the line and column
// of the first violation; and it notes where every key, table header and
// array element starts, for the decoder's error messages.
//
// It knows TOML's strings (basic with escapes, literal, and both multi-line
// forms), comments, table headers, keys, arrays and inline tables well
// enough to never count a bracket or dot inside a string or comment, and
// leaves every other syntax check to the decoder: on text it does not
// understand it still advances, so it terminates on anything, in
// O(len(src)) time and memory. The positions it notes are right for text
// the decoder accepts.
func scan(name string, src []byte) (*keyScan, error) {
	sc := &scanner{name: name, s: src, line: 1, ks: &keyScan{root: &node{elem: -1}}}
	sc.ks.index = map[childKey]*node{}
	if err := sc.run(); err != nil {
		return nil, err
	}
	return sc.ks, nil
}

// keyScan is what scan noted: a tree of the key paths seen and, in file
// order, where each appeared. Building the path strings costs up to their
// length for each key, so it waits for positions, which Parse calls only
// once the decoder has accepted the text.
type keyScan struct {
	root  *node
	index map[childKey]*node
	recs  []rec
}

// node is one key path: a key or table under its parent, or an element of
// an array value (elem >= 0).
type node struct {
	parent *node
	part   string
	elem   int
	tables int    // elements of the array of tables at this path so far
	path   string // the rendered path, once positions built it
	done   bool
}

type childKey struct {
	parent *node
	part   string
}

// rec notes that n (or, with elem >= 0, n's element elem) appears at pos.
type rec struct {
	n    *node
	elem int
	pos  position
}

// child returns the interned node for part under parent.
func (ks *keyScan) child(parent *node, part string) *node {
	k := childKey{parent, part}
	if n, ok := ks.index[k]; ok {
		return n
	}
	n := &node{parent: parent, part: part, elem: -1}
	ks.index[k] = n
	return n
}

// indexed returns the node of element i of the array of tables n.
func (ks *keyScan) indexed(n *node, i int) *node {
	e := ks.child(n, "["+strconv.Itoa(i)+"]")
	e.elem = i
	return e
}

func (ks *keyScan) note(n *node, elem int, at position) {
	ks.recs = append(ks.recs, rec{n, elem, at})
}

// render returns n's path ("a.b[2].c"), built once per node.
func (n *node) render() string {
	if n.done || n.parent == nil {
		return n.path
	}
	p := n.parent.render()
	switch {
	case n.elem >= 0:
		n.path = p + "[" + strconv.Itoa(n.elem) + "]"
	case p == "":
		n.path = n.part
	default:
		n.path = p + "." + n.part
	}
	n.done = true
	return n.path
}

// positions returns where each key path first appears.
func (ks *keyScan) positions() positions {
	ps := make(positions, len(ks.recs))
	for _, r := range ks.recs {
		key := r.n.render()
		if r.elem >= 0 {
			key += "[" + strconv.Itoa(r.elem) + "]"
		}
		if _, ok := ps[key]; !ok {
			ps[key] = r.pos
		}
	}
	return ps
}

// scanner is scan's state.
type scanner struct {
	name      string
	s         []byte
	i         int
	line      int
	lineStart int     // offset of the current line's first byte
	colAt     int     // an offset on the current line whose column is colN
	colN      int     // (0: not yet computed on this line)
	stack     []frame // open arrays and inline tables, at most maxNesting
	ks        *keyScan
}

// frame is an array or inline table open in a value.
type frame struct {
	kind  byte  // '[' or '{'
	outer int   // the depth to return to when it closes
	inner int   // its own depth
	n     *node // the array's or inline table's path
	elems int   // elements of an array begun so far
}

func (sc *scanner) errorf(at int, format string, args ...any) error {
	return &Error{File: sc.name, Line: sc.line, Col: sc.col(at), Msg: fmt.Sprintf(format, args...)}
}

// col is the 1-based column of offset at on the current line, counting a
// UTF-8 sequence as one column. Asked for offsets in increasing order, as
// the scan does, it reads each byte of a line once.
func (sc *scanner) col(at int) int {
	from, c := sc.lineStart, 1
	if sc.colN > 0 && sc.colAt <= at {
		from, c = sc.colAt, sc.colN
	}
	for _, b := range sc.s[from:at] {
		if b < 0x80 || b >= 0xC0 {
			c++
		}
	}
	sc.colAt, sc.colN = at, c
	return c
}

func (sc *scanner) here() position { return position{sc.line, sc.col(sc.i)} }

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *scanner) hasPrefix(p string) bool {
	return len(sc.s)-sc.i >= len(p) && string(sc.s[sc.i:sc.i+len(p)]) == p
}

// newline consumes the '\n' at sc.i.
func (sc *scanner) newline() {
	sc.i++
	sc.line++
	sc.lineStart = sc.i
	sc.colN = 0
}

// skipComment skips from '#' to the end of the line, leaving the '\n'.
func (sc *scanner) skipComment() {
	for !sc.eof() && sc.s[sc.i] != '\n' {
		sc.i++
	}
}

func (sc *scanner) skipSpace() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

// str skips the string starting at sc.i (a quote), of any of TOML's four
// kinds, counting the lines a multi-line string spans. An unterminated
// single-line string ends at the end of its line.
func (sc *scanner) str() {
	q := sc.s[sc.i]
	if sc.hasPrefix(`"""`) || sc.hasPrefix(`'''`) {
		delim := string([]byte{q, q, q})
		sc.i += 3
		for !sc.eof() {
			switch c := sc.s[sc.i]; {
			case c == '\\' && q == '"':
				sc.i++
				if !sc.eof() && sc.s[sc.i] == '\n' {
					sc.newline()
				} else if !sc.eof() {
					sc.i++
				}
			case c == '\n':
				sc.newline()
			case sc.hasPrefix(delim):
				sc.i += 3
				// Up to two more quotes belong to the content: """a"""""
				for n := 0; n < 2 && !sc.eof() && sc.s[sc.i] == q; n++ {
					sc.i++
				}
				return
			default:
				sc.i++
			}
		}
		return
	}
	sc.i++
	for !sc.eof() {
		switch c := sc.s[sc.i]; {
		case c == '\n':
			return
		case c == q:
			sc.i++
			return
		case c == '\\' && q == '"':
			sc.i++
			if !sc.eof() && sc.s[sc.i] != '\n' {
				sc.i++
			}
		default:
			sc.i++
		}
	}
}

// quotedPart returns the name a quoted key part spells, given its text
// from the opening quote on. In a "..." part only \" and \\ are unescaped;
// other escapes stay as written (no policy key needs them).
func quotedPart(raw []byte) string {
	q := raw[0]
	raw = raw[1:]
	if n := len(raw); n > 0 && raw[n-1] == q {
		raw = raw[:n-1]
	}
	if q == '\'' || !strings.Contains(string(raw), `\`) {
		return string(raw)
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) && (raw[i+1] == '"' || raw[i+1] == '\\') {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// key reads a possibly dotted, possibly quoted key, checks its number of
// parts and returns them. It stops at the first byte that cannot continue a
// key ('=', ']', a newline...); it consumes nothing when sc.i cannot start
// one.
func (sc *scanner) key() ([]string, error) {
	start := sc.i
	var parts []string
	for {
		sc.skipSpace()
		if sc.eof() {
			return parts, nil
		}
		switch c := sc.s[sc.i]; {
		case c == '"' || c == '\'':
			from := sc.i
			sc.str()
			parts = append(parts, quotedPart(sc.s[from:sc.i]))
		case isKeyByte(c):
			from := sc.i
			for !sc.eof() && isKeyByte(sc.s[sc.i]) {
				sc.i++
			}
			parts = append(parts, string(sc.s[from:sc.i]))
		default:
			return parts, nil
		}
		if len(parts) > maxKeyParts {
			return nil, sc.errorf(start, "key with more than %d dotted parts", maxKeyParts)
		}
		sc.skipSpace()
		if sc.eof() || sc.s[sc.i] != '.' {
			return parts, nil
		}
		sc.i++
	}
}

// isKeyByte reports whether c may be part of a bare key. It takes more than
// TOML's A-Za-z0-9_- (every byte that cannot end a key), so that the scan
// counts a key's parts wherever the decoder might see one.
func isKeyByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '.', '=', '"', '\'', '[', ']', '{', '}', ',', '#':
		return false
	}
	return true
}

// header reads a table header, [name] or [[name]], at sc.i and returns the
// table that the keys after it belong to and its number of parts.
func (sc *scanner) header() (*node, int, error) {
	at := sc.here()
	sc.i++
	array := !sc.eof() && sc.s[sc.i] == '['
	if array {
		sc.i++
	}
	parts, err := sc.key()
	if err != nil {
		return nil, 0, err
	}
	for !sc.eof() && (sc.s[sc.i] == ']' || sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
	// Each part naming an array of tables, but the last, means its latest
	// element.
	ks := sc.ks
	n := ks.root
	for i, p := range parts {
		n = ks.child(n, p)
		if n.tables > 0 && i < len(parts)-1 {
			n = ks.indexed(n, n.tables-1)
		}
	}
	ks.note(n, -1, at)
	if array {
		n.tables++
		n = ks.indexed(n, n.tables-1)
		ks.note(n, -1, at)
	}
	return n, len(parts), nil
}

// run scans the document. It alternates between expecting a key (at the
// start of a line outside any value, and inside an inline table after '{'
// or ',') and skipping a value, whose brackets it counts.
//
// The depth it bounds is the decoder's: every part of a table header or of
// a dotted key is one level of table, and every array or inline table one
// more, so [a.b] x.y = [{z = 1}] reaches 2+2+1+1+1 = 7.
func (sc *scanner) run() error {
	wantKey := true
	header := 0 // parts of the current table header
	cur := 0    // the depth a '[' or '{' opened now would be nested in
	table := sc.ks.root
	// The value being read is val, or with valElem >= 0 val's element
	// valElem (a node made only if the element opens an array or table).
	var val *node
	valElem := -1
	wantElem := false // the next value byte starts an element of the innermost array
	for !sc.eof() {
		c := sc.s[sc.i]
		if wantKey {
			switch {
			case c == ' ' || c == '\t' || c == '\r':
				sc.i++
			case c == '\n':
				sc.newline()
			case c == '#':
				sc.skipComment()
			case c == '[' && len(sc.stack) == 0:
				n, parts, err := sc.header()
				if err != nil {
					return err
				}
				table, header = n, parts
			case c == '}' && len(sc.stack) > 0:
				cur = sc.pop()
				sc.i++
				wantKey = false
			case c == ',' && len(sc.stack) > 0:
				sc.i++ // a stray comma; the decoder reports it
			default:
				start, at := sc.i, sc.here()
				parts, err := sc.key()
				if err != nil {
					return err
				}
				base, parent := header, table
				if n := len(sc.stack); n > 0 {
					base, parent = sc.stack[n-1].inner, sc.stack[n-1].n
				}
				if cur = base + len(parts); cur > maxNesting {
					return sc.errorf(start, "nesting deeper than %d levels of tables, dotted keys, arrays and inline tables", maxNesting)
				}
				for _, p := range parts {
					parent = sc.ks.child(parent, p)
					sc.ks.note(parent, -1, at)
				}
				val, valElem = parent, -1
				sc.skipSpace()
				if !sc.eof() && sc.s[sc.i] == '=' {
					sc.i++
					wantKey = false
				} else if sc.i == start {
					sc.i++ // not a key: skip a byte to keep going
				}
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r':
			sc.i++
			continue
		case '\n':
			sc.newline()
			if len(sc.stack) == 0 {
				wantKey = true
			}
			continue
		case '#':
			sc.skipComment()
			continue
		}
		if n := len(sc.stack); wantElem && c != ']' && c != ',' && n > 0 && sc.stack[n-1].kind == '[' {
			// The first byte of an array element.
			f := &sc.stack[n-1]
			sc.ks.note(f.n, f.elems, sc.here())
			val, valElem = f.n, f.elems
			f.elems++
		}
		wantElem = false
		switch c {
		case '"', '\'':
			sc.str()
		case '[', '{':
			if cur+1 > maxNesting {
				return sc.errorf(sc.i, "nesting deeper than %d levels of tables, dotted keys, arrays and inline tables", maxNesting)
			}
			n := val
			switch {
			case n == nil:
				n = sc.ks.root
			case valElem >= 0:
				n = &node{parent: val, elem: valElem}
			}
			sc.stack = append(sc.stack, frame{kind: c, outer: cur, inner: cur + 1, n: n})
			cur++
			sc.i++
			wantKey = c == '{'
			wantElem = c == '['
		case ']', '}':
			if len(sc.stack) > 0 {
				cur = sc.pop()
			}
			sc.i++
		case ',':
			sc.i++
			if n := len(sc.stack); n > 0 {
				cur = sc.stack[n-1].inner
				wantKey = sc.stack[n-1].kind == '{'
				wantElem = sc.stack[n-1].kind == '['
			}
		default:
			sc.i++
		}
	}
	return nil
}

// pop closes the innermost array or inline table and returns the depth
// around it.
func (sc *scanner) pop() int {
	f := sc.stack[len(sc.stack)-1]
	sc.stack = sc.stack[:len(sc.stack)-1]
	return f.outer
}

// tooLarge is the error for a policy text over maxFileSize bytes.
func tooLarge(name string) error {
	return &Error{File: name, Msg: fmt.Sprintf("policy is larger than %d bytes", maxFileSize)}
}
