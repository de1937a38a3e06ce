package mime

import (
	"io"
	"strings"
	"unicode/utf8"
)

// charsetKind is how a charset is turned into UTF-8.
type charsetKind uint8

const (
	csRaw    charsetKind = iota // unknown: octets passed through
	csUTF8                      // validated, bad octets become U+FFFD
	csLatin1                    // ISO-8859-1, read as windows-1252
)

func lookupCharset(name string) charsetKind {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "utf-8", "utf8", "us-ascii", "ascii", "us", "ansi_x3.4-1968", "iso-646-us",
		"iso646-us", "iso-ir-6", "cp367", "ibm367", "csascii", "":
		// ASCII is a subset of UTF-8, and text labelled ASCII that
		// holds 8-bit octets is UTF-8 more often than anything else.
		return csUTF8
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1",
		"latin-1", "l1", "cp819", "ibm819", "iso-ir-100", "csisolatin1",
		"windows-1252", "cp1252", "x-cp1252", "ms-ansi":
		// ISO-8859-1 text with octets 0x80-0x9F is windows-1252:
		// C1 controls do not occur in mail text.
		return csLatin1
	}
	return csRaw
}

// cp1252 maps octets 0x80-0x9F of windows-1252; the five it leaves
// undefined keep their ISO-8859-1 (C1) meaning.
var cp1252 = [32]rune{
	0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
	0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
}

// toUTF8 appends b, in the given charset, as UTF-8.
func toUTF8(dst, b []byte, kind charsetKind) []byte {
	switch kind {
	case csLatin1:
		for _, c := range b {
			switch {
			case c < 0x80:
				dst = append(dst, c)
			case c < 0xA0:
				dst = utf8.AppendRune(dst, cp1252[c-0x80])
			default:
				dst = utf8.AppendRune(dst, rune(c))
			}
		}
		return dst
	case csUTF8:
		for len(b) > 0 {
			r, n := utf8.DecodeRune(b)
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, b[:n]...)
			}
			b = b[n:]
		}
		return dst
	}
	return append(dst, b...)
}

// NewCharsetReader returns a reader of r's text, in the named charset, as
// UTF-8. UTF-8, US-ASCII, ISO-8859-1 and windows-1252 are converted; other
// charsets are passed through as they are.
func NewCharsetReader(charset string, r io.Reader) io.Reader {
	k := lookupCharset(charset)
	if k == csRaw {
		return r
	}
	return &charsetReader{src: r, kind: k, in: make([]byte, 16<<10)}
}

type charsetReader struct {
	src  io.Reader
	kind charsetKind
	in   []byte
	keep int    // octets of an unfinished UTF-8 sequence at the start of in
	out  []byte // converted, not yet returned
	err  error
}

func (c *charsetReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			if c.keep > 0 {
				c.out = toUTF8(c.out[:0], c.in[:c.keep], c.kind)
				c.keep = 0
				break
			}
			return 0, c.err
		}
		n, err := c.src.Read(c.in[c.keep:])
		c.err = err
		n += c.keep
		c.keep = 0
		end := n
		if c.kind == csUTF8 && err == nil {
			// Hold back a sequence cut by the read.
			for i := 1; i <= 3 && i <= n; i++ {
				if b := c.in[n-i]; b >= 0xC0 {
					if !utf8.FullRune(c.in[n-i : n]) {
						end = n - i
					}
					break
				} else if b < 0x80 {
					break
				}
			}
		}
		c.out = toUTF8(c.out[:0], c.in[:end], c.kind)
		c.keep = copy(c.in, c.in[end:n])
	}
	k := copy(p, c.out)
	c.out = c.out[k:]
	return k, nil
}
