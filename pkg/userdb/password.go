package userdb

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt cost of new hashes. 10 (2^10 rounds) takes roughly
// 50-100 ms on a current server core: every IMAP, POP3 and SMTP AUTH login
// pays it, and 12 would make a small host spend whole cores on clients that
// reconnect often, while 10 still limits an attacker holding a stolen file
// to some tens of guesses per second per core. doveadm's default of 5 is
// too cheap for that.
const Cost = 10

// Scheme is the scheme of new hashes, Dovecot's name for bcrypt.
const Scheme = "BLF-CRYPT"

// verifiers maps a Dovecot scheme name to its check. New schemes
// (SHA512-CRYPT, ARGON2ID, ...) are one entry each.
var verifiers = map[string]func(hash, password string) bool{
	"BLF-CRYPT": verifyBcrypt,
	// CRYPT is crypt(3): the scheme of a hash without "{...}" in a
	// passwd-file. Of its formats only bcrypt ($2a$, $2b$, $2y$) is
	// recognised so far.
	"CRYPT":     verifyBcrypt,
	"PLAIN":     verifyPlain,
	"CLEAR":     verifyPlain,
	"CLEARTEXT": verifyPlain,
}

// Verify reports whether password matches the user's hash. Unknown schemes,
// empty hashes and passwords containing NUL never match.
func (u *User) Verify(password string) bool {
	scheme, hash := splitScheme(u.Hash)
	v := verifiers[scheme]
	if v == nil || hash == "" || strings.IndexByte(password, 0) >= 0 {
		// crypt(3) would stop at the NUL and accept a prefix (HOSTILE 14).
		return false
	}
	return v(hash, password)
}

// splitScheme splits "{SCHEME}hash"; scheme names are case-insensitive.
func splitScheme(h string) (scheme, hash string) {
	if strings.HasPrefix(h, "{") {
		if end := strings.IndexByte(h, '}'); end > 0 {
			return strings.ToUpper(h[1:end]), h[end+1:]
		}
	}
	return "CRYPT", h
}

// MaxCost is the highest bcrypt cost Verify accepts: 64 times the default,
// seconds per login. A hash above it (cost 31 takes days) would let one
// line of the file stall the auth daemon, so it never matches.
const MaxCost = 16

func verifyBcrypt(hash, password string) bool {
	if !strings.HasPrefix(hash, "$2") {
		return false
	}
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost > MaxCost {
		return false
	}
	// CompareHashAndPassword compares in constant time; like crypt(3) it
	// uses only the first 72 bytes of the password.
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// verifyPlain compares digests so that neither the content nor the length
// of the stored password shows in the timing.
func verifyPlain(stored, password string) bool {
	a := sha256.Sum256([]byte(stored))
	b := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// HashPassword returns "{BLF-CRYPT}" and a bcrypt hash of password.
func HashPassword(password string) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), Cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return "{" + Scheme + "}" + string(h), nil
}

// ErrBadPassword wraps every reason a new password is refused.
var ErrBadPassword = errors.New("unusable password")

func checkPassword(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty", ErrBadPassword)
	case len(p) > 72:
		// bcrypt ignores everything after 72 bytes: refuse rather than
		// let a user believe the rest counts.
		return fmt.Errorf("%w: longer than 72 bytes", ErrBadPassword)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrBadPassword)
	}
	return nil
}
