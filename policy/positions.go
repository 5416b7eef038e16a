package policy

import (
	"strconv"
	"strings"
)

// position is a 1-based line and column in a policy file.
type position struct{ line, col int }

// positions maps key paths ("meter.rate", "rule[1].threshold",
// "allow.addresses[2]", table headers "meter", "rule[1]") to where they
// appear in the file. The toml package does not export key positions, so
// scanPositions recovers them from the text.
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

// posScanner walks a TOML document that the toml package has already
// accepted, recording where each key, table header and array element starts.
// It does not validate; on input it does not understand it still always
// advances, so it terminates on anything.
type posScanner struct {
	s         string
	i         int
	line, col int
	pos       positions
	arrays    map[string]int // array-of-tables path -> number of elements so far
}

// scanPositions returns the positions of the keys in the TOML text src.
func scanPositions(src string) positions {
	sc := &posScanner{s: src, line: 1, col: 1, pos: positions{}, arrays: map[string]int{}}
	sc.document()
	return sc.pos
}

func (sc *posScanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *posScanner) peek() byte {
	if sc.eof() {
		return 0
	}
	return sc.s[sc.i]
}

func (sc *posScanner) hasPrefix(p string) bool { return strings.HasPrefix(sc.s[sc.i:], p) }

func (sc *posScanner) advance() {
	if sc.eof() {
		return
	}
	c := sc.s[sc.i]
	sc.i++
	switch {
	case c == '\n':
		sc.line++
		sc.col = 1
	case c < 0x80 || c >= 0xC0: // count a UTF-8 sequence as one column
		sc.col++
	}
}

func (sc *posScanner) advanceN(n int) {
	for ; n > 0; n-- {
		sc.advance()
	}
}

func (sc *posScanner) here() position { return position{sc.line, sc.col} }

// skipSpace skips spaces and tabs.
func (sc *posScanner) skipSpace() {
	for c := sc.peek(); c == ' ' || c == '\t'; c = sc.peek() {
		sc.advance()
	}
}

// skipBlank skips whitespace, newlines and comments.
func (sc *posScanner) skipBlank() {
	for !sc.eof() {
		switch sc.peek() {
		case ' ', '\t', '\r', '\n':
			sc.advance()
		case '#':
			for !sc.eof() && sc.peek() != '\n' {
				sc.advance()
			}
		default:
			return
		}
	}
}

func (sc *posScanner) record(key string, p position) {
	if _, ok := sc.pos[key]; !ok {
		sc.pos[key] = p
	}
}

func (sc *posScanner) document() {
	cur := ""
	for {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		start, at := sc.i, sc.here()
		switch {
		case sc.hasPrefix("[["):
			sc.advanceN(2)
			name := sc.resolve(sc.key())
			n := sc.arrays[name]
			sc.arrays[name] = n + 1
			cur = name + "[" + strconv.Itoa(n) + "]"
			sc.record(name, at)
			sc.record(cur, at)
		case sc.peek() == '[':
			sc.advance()
			cur = sc.resolve(sc.key())
			sc.record(cur, at)
		default:
			sc.keyValue(cur)
		}
		for sc.peek() == ']' {
			sc.advance()
		}
		if sc.i == start {
			sc.advance()
		}
	}
}

// resolve turns header key parts into a path, giving each part that names
// an array of tables the index of its latest element.
func (sc *posScanner) resolve(parts []string) string {
	path := ""
	for i, p := range parts {
		if path != "" {
			path += "."
		}
		path += p
		if n := sc.arrays[path]; n > 0 && i < len(parts)-1 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return path
}

// key reads a possibly dotted, possibly quoted key.
func (sc *posScanner) key() []string {
	var parts []string
	for {
		sc.skipSpace()
		switch sc.peek() {
		case '"':
			parts = append(parts, sc.basicString())
		case '\'':
			parts = append(parts, sc.literalString())
		default:
			start := sc.i
			for c := sc.peek(); c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'; c = sc.peek() {
				sc.advance()
			}
			parts = append(parts, sc.s[start:sc.i])
		}
		sc.skipSpace()
		if sc.peek() != '.' {
			return parts
		}
		sc.advance()
	}
}

func join(prefix string, parts ...string) string {
	for _, p := range parts {
		if prefix == "" {
			prefix = p
		} else {
			prefix += "." + p
		}
	}
	return prefix
}

func (sc *posScanner) keyValue(table string) {
	at := sc.here()
	parts := sc.key()
	for i := range parts {
		sc.record(join(table, parts[:i+1]...), at)
	}
	sc.skipSpace()
	if sc.peek() != '=' {
		return
	}
	sc.advance()
	sc.skipSpace()
	sc.value(join(table, parts...))
}

func (sc *posScanner) value(path string) {
	switch {
	case sc.hasPrefix(`"""`):
		sc.advanceN(3)
		for !sc.eof() && !sc.hasPrefix(`"""`) {
			if sc.peek() == '\\' {
				sc.advance()
			}
			sc.advance()
		}
		sc.advanceN(3)
		for i := 0; i < 2 && sc.peek() == '"'; i++ {
			sc.advance()
		}
	case sc.hasPrefix(`'''`):
		sc.advanceN(3)
		for !sc.eof() && !sc.hasPrefix(`'''`) {
			sc.advance()
		}
		sc.advanceN(3)
		for i := 0; i < 2 && sc.peek() == '\''; i++ {
			sc.advance()
		}
	case sc.peek() == '"':
		sc.basicString()
	case sc.peek() == '\'':
		sc.literalString()
	case sc.peek() == '[':
		sc.advance()
		for n := 0; ; n++ {
			sc.skipBlank()
			if sc.eof() || sc.peek() == ']' {
				sc.advance()
				return
			}
			elem := path + "[" + strconv.Itoa(n) + "]"
			sc.record(elem, sc.here())
			start := sc.i
			sc.value(elem)
			sc.skipBlank()
			if sc.peek() == ',' {
				sc.advance()
			} else if sc.i == start {
				sc.advance()
			}
		}
	case sc.peek() == '{':
		sc.advance()
		for {
			sc.skipBlank()
			if sc.eof() || sc.peek() == '}' {
				sc.advance()
				return
			}
			start := sc.i
			sc.keyValue(path)
			sc.skipBlank()
			if sc.peek() == ',' {
				sc.advance()
			} else if sc.i == start {
				sc.advance()
			}
		}
	default:
		for c := sc.peek(); !sc.eof() && c != ',' && c != ']' && c != '}' && c != '\n' && c != '#'; c = sc.peek() {
			sc.advance()
		}
	}
}

// basicString reads a "..." string and returns its content (escapes other
// than \" and \\ are kept as written; keys in a policy never need them).
func (sc *posScanner) basicString() string {
	sc.advance()
	var b strings.Builder
	for !sc.eof() && sc.peek() != '"' && sc.peek() != '\n' {
		if sc.peek() == '\\' {
			sc.advance()
			if c := sc.peek(); c != '"' && c != '\\' {
				b.WriteByte('\\')
			}
		}
		b.WriteByte(sc.peek())
		sc.advance()
	}
	sc.advance()
	return b.String()
}

// literalString reads a '...' string and returns its content.
func (sc *posScanner) literalString() string {
	sc.advance()
	start := sc.i
	for !sc.eof() && sc.peek() != '\'' && sc.peek() != '\n' {
		sc.advance()
	}
	s := sc.s[start:sc.i]
	sc.advance()
	return s
}
