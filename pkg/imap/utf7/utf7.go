// Package utf7 converts mailbox names between UTF-8 and the modified UTF-7
// of RFC 3501 §5.1.3, which IMAP4rev1 clients use on the wire.
//
// Decoding is strict so that every accepted name has exactly one spelling
// and round-trips (HOSTILE 43): raw 8-bit and control octets, a shift that
// is never closed, an empty shift other than "&-", base64 that encodes
// printable ASCII, two shifted runs next to each other, non-zero padding
// bits and unpaired UTF-16 surrogates are all refused.
package utf7

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalid is returned for input that is not canonical modified UTF-7,
// or (Encode) not valid UTF-8.
var ErrInvalid = errors.New("utf7: invalid modified UTF-7 mailbox name")

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var index [256]int8

func init() {
	for i := range index {
		index[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		index[alphabet[i]] = int8(i)
	}
}

func printable(c byte) bool { return c >= 0x20 && c <= 0x7e }

// Decode converts modified UTF-7 to UTF-8.
func Decode(s string) (string, error) {
	// Fast path: nothing to decode.
	plain := true
	for i := 0; i < len(s); i++ {
		if s[i] == '&' || !printable(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s, nil
	}
	out := make([]byte, 0, len(s)+8)
	lastShiftEnd := -1 // index just after the '-' of the previous shifted run
	for i := 0; i < len(s); {
		c := s[i]
		if !printable(c) {
			return "", ErrInvalid
		}
		if c != '&' {
			out = append(out, c)
			i++
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '-' {
			j++
		}
		if j == len(s) {
			return "", ErrInvalid // shift never closed
		}
		if j == i+1 {
			out = append(out, '&') // "&-"
			i = j + 1
			continue
		}
		if i == lastShiftEnd {
			return "", ErrInvalid // two adjacent runs must be one
		}
		var err error
		out, err = decodeRun(out, s[i+1:j])
		if err != nil {
			return "", err
		}
		i = j + 1
		lastShiftEnd = i
	}
	return string(out), nil
}

// decodeRun decodes one modified-base64 run of UTF-16BE.
func decodeRun(out []byte, b64 string) ([]byte, error) {
	var bits uint32
	var nbits uint
	var units []uint16
	for k := 0; k < len(b64); k++ {
		v := index[b64[k]]
		if v < 0 {
			return nil, ErrInvalid
		}
		bits = bits<<6 | uint32(v)
		nbits += 6
		if nbits >= 16 {
			nbits -= 16
			units = append(units, uint16(bits>>nbits))
			bits &= 1<<nbits - 1
		}
	}
	// Leftover bits are padding: fewer than 6 and all zero (RFC 2152).
	if nbits >= 6 || bits != 0 || len(units) == 0 {
		return nil, ErrInvalid
	}
	for k := 0; k < len(units); k++ {
		u := units[k]
		var r rune
		switch {
		case utf16.IsSurrogate(rune(u)):
			if u >= 0xDC00 || k+1 == len(units) {
				return nil, ErrInvalid
			}
			r = utf16.DecodeRune(rune(u), rune(units[k+1]))
			if r == utf8.RuneError {
				return nil, ErrInvalid
			}
			k++
		default:
			r = rune(u)
			if r < 0x80 && printable(byte(r)) {
				return nil, ErrInvalid // printable ASCII must not be shifted
			}
		}
		out = utf8.AppendRune(out, r)
	}
	return out, nil
}

// Encode converts UTF-8 to modified UTF-7.
func Encode(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrInvalid
	}
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		c := s[i]
		if printable(c) {
			out = append(out, c)
			if c == '&' {
				out = append(out, '-')
			}
			i++
			continue
		}
		// Collect the run of characters that need shifting.
		var units []uint16
		for i < len(s) && !printable(s[i]) {
			r, n := utf8.DecodeRuneInString(s[i:])
			i += n
			units = utf16.AppendRune(units, r)
		}
		out = append(out, '&')
		var bits uint32
		var nbits uint
		for _, u := range units {
			bits = bits<<16 | uint32(u)
			nbits += 16
			for nbits >= 6 {
				nbits -= 6
				out = append(out, alphabet[(bits>>nbits)&63])
			}
			bits &= 1<<nbits - 1
		}
		if nbits > 0 {
			out = append(out, alphabet[(bits<<(6-nbits))&63])
		}
		out = append(out, '-')
	}
	return string(out), nil
}
