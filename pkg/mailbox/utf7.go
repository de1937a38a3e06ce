package mailbox

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 (RFC 3501 §5.1.3) is how IMAP4rev1 clients spell mailbox
// names and how Dovecot stores folder names on disk (Maildir++ ".Name"
// directories, dovecot-uidlist is per folder, subscriptions). The decoder
// is strict, as Dovecot's imap-utf7.c is, so every accepted name has exactly
// one spelling (HOSTILE 43): a name that decodes is re-encoded to the same
// bytes.

// ErrBadUTF7 is returned for input that is not canonical modified UTF-7.
var ErrBadUTF7 = errors.New("mailbox: malformed modified UTF-7")

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var b64index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(b64chars); i++ {
		t[b64chars[i]] = int8(i)
	}
	return t
}()

// printable reports whether c stands for itself in modified UTF-7.
func printable(c rune) bool { return c >= 0x20 && c <= 0x7e }

// EncodeUTF7 converts a UTF-8 mailbox name to modified UTF-7. It fails only
// for invalid UTF-8.
func EncodeUTF7(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrBadUTF7
	}
	var b strings.Builder
	b.Grow(len(s))
	var run []uint16
	flush := func() {
		if run == nil {
			return
		}
		b.WriteByte('&')
		var acc uint32
		bits := 0
		for _, u := range run {
			acc = acc<<16 | uint32(u)
			bits += 16
			for bits >= 6 {
				bits -= 6
				b.WriteByte(b64chars[(acc>>bits)&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(b64chars[(acc<<(6-bits))&0x3f])
		}
		b.WriteByte('-')
		run = nil
	}
	for _, r := range s {
		if printable(r) {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			run = append(run, uint16(r1), uint16(r2))
		} else {
			run = append(run, uint16(r))
		}
	}
	flush()
	return b.String(), nil
}

// DecodeUTF7 converts a modified UTF-7 mailbox name to UTF-8. It rejects
// raw bytes outside printable ASCII, a lone "&", unterminated shifts,
// characters outside the base64 alphabet, non-zero or overlong padding bits,
// odd UTF-16 lengths, unpaired surrogates, shifted printable ASCII, and a
// shift that directly follows another ("&U,BTFw-&ZeVnLIqe-", which a
// canonical encoder writes as one).
func DecodeUTF7(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	prevShiftEnd := -1 // index just after the last "-" that closed a shift
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrBadUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		// "&-" is a literal "&".
		if i+1 < len(s) && s[i+1] == '-' {
			b.WriteByte('&')
			i += 2
			continue
		}
		if prevShiftEnd == i {
			return "", ErrBadUTF7
		}
		j := i + 1
		var acc uint32
		bits := 0
		var units []uint16
		for ; j < len(s) && s[j] != '-'; j++ {
			v := b64index[s[j]]
			if v < 0 {
				return "", ErrBadUTF7
			}
			acc = acc<<6 | uint32(v)
			bits += 6
			if bits >= 16 {
				bits -= 16
				units = append(units, uint16(acc>>bits))
				acc &= 1<<bits - 1
			}
		}
		if j >= len(s) || len(units) == 0 || bits >= 6 || acc != 0 {
			return "", ErrBadUTF7
		}
		for k := 0; k < len(units); k++ {
			u := rune(units[k])
			switch {
			case utf16.IsSurrogate(u):
				if u >= 0xdc00 || k+1 >= len(units) {
					return "", ErrBadUTF7
				}
				r := utf16.DecodeRune(u, rune(units[k+1]))
				if r == utf8.RuneError {
					return "", ErrBadUTF7
				}
				b.WriteRune(r)
				k++
			case printable(u):
				return "", ErrBadUTF7
			default:
				b.WriteRune(u)
			}
		}
		i = j + 1
		prevShiftEnd = i
	}
	return b.String(), nil
}
