package policy

import "fmt"

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

// prescan checks that src nests tables, arrays and inline tables at most
// maxNesting deep and that no key or table header has more than maxKeyParts
// dotted parts. It reads the bytes once, knows TOML's strings (basic with escapes,
// literal, and both multi-line forms), comments, table headers and keys
// well enough to never count a bracket or dot inside a string or comment,
// and leaves every other syntax check to the decoder: on text it does not
// understand it still advances, so it terminates on anything in O(len(src)).
// The error is an *Error naming the line and column.
func prescan(name string, src []byte) error {
	sc := &preScanner{name: name, s: src, line: 1}
	return sc.run()
}

// preScanner is prescan's state.
type preScanner struct {
	name      string
	s         []byte
	i         int
	line      int
	lineStart int     // offset of the current line's first byte
	stack     []frame // open arrays and inline tables, at most maxNesting
}

func (sc *preScanner) errorf(at int, format string, args ...any) error {
	return &Error{File: sc.name, Line: sc.line, Col: sc.col(at), Msg: fmt.Sprintf(format, args...)}
}

// col is the 1-based column of offset at on the current line, counting a
// UTF-8 sequence as one column like the position scanner does.
func (sc *preScanner) col(at int) int {
	c := 1
	for _, b := range sc.s[sc.lineStart:at] {
		if b < 0x80 || b >= 0xC0 {
			c++
		}
	}
	return c
}

func (sc *preScanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *preScanner) hasPrefix(p string) bool {
	return len(sc.s)-sc.i >= len(p) && string(sc.s[sc.i:sc.i+len(p)]) == p
}

// newline consumes the '\n' at sc.i.
func (sc *preScanner) newline() {
	sc.i++
	sc.line++
	sc.lineStart = sc.i
}

// skipComment skips from '#' to the end of the line, leaving the '\n'.
func (sc *preScanner) skipComment() {
	for !sc.eof() && sc.s[sc.i] != '\n' {
		sc.i++
	}
}

// str skips the string starting at sc.i (a quote), of any of TOML's four
// kinds, counting the lines a multi-line string spans. An unterminated
// single-line string ends at the end of its line.
func (sc *preScanner) str() {
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

// key skips a possibly dotted, possibly quoted key, checks its number of
// parts and returns it. It stops at the first byte that cannot continue a key ('=', ']',
// a newline...); it consumes nothing when sc.i cannot start one.
func (sc *preScanner) key() (int, error) {
	start := sc.i
	parts := 0
	for {
		for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
			sc.i++
		}
		if sc.eof() {
			return parts, nil
		}
		switch c := sc.s[sc.i]; {
		case c == '"' || c == '\'':
			sc.str()
		case isKeyByte(c):
			for !sc.eof() && isKeyByte(sc.s[sc.i]) {
				sc.i++
			}
		default:
			return parts, nil
		}
		if parts++; parts > maxKeyParts {
			return 0, sc.errorf(start, "key with more than %d dotted parts", maxKeyParts)
		}
		for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
			sc.i++
		}
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

// frame is an array or inline table open in a value.
type frame struct {
	kind  byte // '[' or '{'
	outer int  // the depth to return to when it closes
	inner int  // its own depth
}

// run scans the document. It alternates between expecting a key (at the
// start of a line outside any value, and inside an inline table after '{'
// or ',') and skipping a value, whose brackets it counts.
//
// The depth it bounds is the decoder's: every part of a table header or of
// a dotted key is one level of table, and every array or inline table one
// more, so [a.b] x.y = [{z = 1}] reaches 2+2+1+1+1 = 7.
func (sc *preScanner) run() error {
	wantKey := true
	header := 0 // parts of the current table header
	cur := 0    // the depth a '[' or '{' opened now would be nested in
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
				// A table header, [name] or [[name]].
				sc.i++
				if !sc.eof() && sc.s[sc.i] == '[' {
					sc.i++
				}
				parts, err := sc.key()
				if err != nil {
					return err
				}
				header = parts
				for !sc.eof() && (sc.s[sc.i] == ']' || sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
					sc.i++
				}
			case c == '}' && len(sc.stack) > 0:
				cur = sc.pop()
				sc.i++
				wantKey = false
			case c == ',' && len(sc.stack) > 0:
				sc.i++ // a stray comma; the decoder reports it
			default:
				start := sc.i
				parts, err := sc.key()
				if err != nil {
					return err
				}
				base := header
				if n := len(sc.stack); n > 0 {
					base = sc.stack[n-1].inner
				}
				if cur = base + parts; cur > maxNesting {
					return sc.errorf(start, "nesting deeper than %d levels of tables, dotted keys, arrays and inline tables", maxNesting)
				}
				for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
					sc.i++
				}
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
		case '\n':
			sc.newline()
			if len(sc.stack) == 0 {
				wantKey = true
			}
		case '#':
			sc.skipComment()
		case '"', '\'':
			sc.str()
		case '[', '{':
			if cur+1 > maxNesting {
				return sc.errorf(sc.i, "nesting deeper than %d levels of tables, dotted keys, arrays and inline tables", maxNesting)
			}
			sc.stack = append(sc.stack, frame{kind: c, outer: cur, inner: cur + 1})
			cur++
			sc.i++
			wantKey = c == '{'
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
			}
		default:
			sc.i++
		}
	}
	return nil
}

// pop closes the innermost array or inline table and returns the depth
// around it.
func (sc *preScanner) pop() int {
	f := sc.stack[len(sc.stack)-1]
	sc.stack = sc.stack[:len(sc.stack)-1]
	return f.outer
}

// tooLarge is the error for a policy text over maxFileSize bytes.
func tooLarge(name string) error {
	return &Error{File: name, Msg: fmt.Sprintf("policy is larger than %d bytes", maxFileSize)}
}
