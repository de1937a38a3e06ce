package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// maxSASLField caps the authorization identity, the login name and the
// password of PLAIN (RFC 4616 §2: "up to 255 octets" each) and LOGIN.
const maxSASLField = 255

// Errors of the SASL decoders. Their text is what the log shows after
// "SASL PLAIN authentication failed: ".
var (
	errBase64        = errors.New("invalid base64 data")
	errPlainSyntax   = errors.New("malformed PLAIN response")
	errSASLField     = errors.New("empty or overlong user name or password")
	errSASLChars     = errors.New("invalid characters in user name or password")
	errAuthzMismatch = errors.New("authorization identity differs from authentication identity")
)

// decodeSASL decodes a client response line (RFC 4954 §4): base64 of the
// response, "=" for an empty one. Padding may be left out, as some clients
// do; anything else that is not the base64 alphabet is an error.
func decodeSASL(line string) ([]byte, error) {
	if line == "=" {
		return []byte{}, nil
	}
	enc := base64.StdEncoding.Strict()
	if len(line)%4 != 0 {
		enc = base64.RawStdEncoding.Strict()
	}
	b, err := enc.DecodeString(line)
	if err != nil || line == "" {
		return nil, errBase64
	}
	return b, nil
}

// decodePlain splits a PLAIN message (RFC 4616 §2),
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//
// into login name and password. An authorization identity other than the
// login name itself is refused: nobody here may act as someone else
// (HOSTILE 31). Exactly two NULs, non-empty fields of at most 255 octets,
// valid UTF-8, and no control characters in the names (HOSTILE 14, 32).
func decodePlain(msg []byte) (user, pass string, err error) {
	if bytes.Count(msg, []byte{0}) != 2 {
		return "", "", errPlainSyntax
	}
	parts := bytes.SplitN(msg, []byte{0}, 3)
	authz, authc, pw := string(parts[0]), string(parts[1]), string(parts[2])
	if err := checkSASLFields(authc, pw); err != nil {
		return "", "", err
	}
	if len(authz) > maxSASLField || !utf8.ValidString(authz) || hasControl(authz) {
		return "", "", errSASLChars
	}
	if authz != "" && authz != authc {
		return "", "", errAuthzMismatch
	}
	return authc, pw, nil
}

// checkSASLFields validates a login name and password of PLAIN or LOGIN.
// The password may hold any character but NUL (a C-string boundary in
// other software: HOSTILE 14); the name no control character at all.
func checkSASLFields(user, pass string) error {
	if user == "" || pass == "" || len(user) > maxSASLField || len(pass) > maxSASLField {
		return errSASLField
	}
	if !utf8.ValidString(user) || !utf8.ValidString(pass) || hasControl(user) || strings.IndexByte(pass, 0) >= 0 {
		return errSASLChars
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
