package userdb

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
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

// verifiers maps a Dovecot scheme name to its check, so that a Dovecot
// passwd-file works unchanged.
var verifiers = map[string]func(hash, password string) bool{
	"BLF-CRYPT": verifyBcrypt,
	// CRYPT is crypt(3): the scheme of a hash without "{...}" in a
	// passwd-file. The format is told by the hash's prefix, as libxcrypt
	// does; see verifyCrypt for the ones recognised.
	"CRYPT":        verifyCrypt,
	"SHA512-CRYPT": verifySHA512Crypt,
	"SHA256-CRYPT": verifySHA256Crypt,
	"ARGON2ID":     verifyArgon2id,
	"ARGON2I":      verifyArgon2i,
	"PLAIN":        verifyPlain,
	"CLEAR":        verifyPlain,
	"CLEARTEXT":    verifyPlain,
}

// MaxPasswordLength is the longest password Verify considers, Linux-PAM's
// PAM_MAX_RESP_SIZE. SHA-crypt hashes the whole password in every round,
// so without a bound a long password multiplies the work of one login
// (CVE-2013-1443 was this attack on Django); no real password is longer.
const MaxPasswordLength = 512

// Verify reports whether password matches the user's hash. Unknown schemes,
// empty hashes, passwords containing NUL and passwords longer than
// MaxPasswordLength never match.
func (u *User) Verify(password string) bool {
	scheme, hash := splitScheme(u.Hash)
	v := verifiers[scheme]
	if v == nil || hash == "" || strings.IndexByte(password, 0) >= 0 || len(password) > MaxPasswordLength {
		// crypt(3) would stop at the NUL and accept a prefix (HOSTILE 14).
		return false
	}
	return v(hash, password)
}

// KnownScheme reports whether Verify can check hash at all: its scheme is
// in the table and, for CRYPT, its format is one verifyCrypt knows. The
// auth daemon uses it to pick a real hash to spend the same work on when a
// user does not exist.
func KnownScheme(hash string) bool {
	scheme, h := splitScheme(hash)
	if verifiers[scheme] == nil || h == "" {
		return false
	}
	if scheme == "CRYPT" {
		return strings.HasPrefix(h, "$2") || strings.HasPrefix(h, "$5$") || strings.HasPrefix(h, "$6$")
	}
	return true
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

// verifyCrypt is the CRYPT scheme: crypt(3) formats told by their prefix.
// yescrypt ($y$), which Debian 12 writes to /etc/shadow, is not among them:
// system users are checked through PAM, and a passwd-file line with such
// a hash never matches.
func verifyCrypt(hash, password string) bool {
	switch {
	case strings.HasPrefix(hash, "$2"):
		return verifyBcrypt(hash, password)
	case strings.HasPrefix(hash, "$5$"):
		return verifySHA256Crypt(hash, password)
	case strings.HasPrefix(hash, "$6$"):
		return verifySHA512Crypt(hash, password)
	}
	return false
}

// SHA-crypt ("Unix crypt using SHA-256 and SHA-512", Ulrich Drepper, 2007),
// glibc's and libxcrypt's $5$ and $6$, Dovecot's SHA256-CRYPT and
// SHA512-CRYPT.
const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxSalt       = 16
	// MaxSHACryptRounds is the most rounds Verify computes. The
	// specification allows 999,999,999, a quarter of an hour of one core
	// per login attempt: a hash above the bound never matches and costs
	// nothing. A million rounds is 200 times the default.
	MaxSHACryptRounds = 1_000_000
)

// shaCryptVariant is what differs between $5$ and $6$: the digest, the
// order in which the final digest's bytes are encoded (specification,
// step 22) and how many characters the last, partial group takes.
type shaCryptVariant struct {
	prefix string
	newSum func() hash.Hash
	order  [][3]int // groups of three bytes, most significant first
	tail   []int    // the last bytes, most significant first
}

var sha512Crypt = shaCryptVariant{
	prefix: "$6$",
	newSum: sha512.New,
	order: [][3]int{
		{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
		{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
		{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
		{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41},
	},
	tail: []int{63},
}

var sha256Crypt = shaCryptVariant{
	prefix: "$5$",
	newSum: sha256.New,
	order: [][3]int{
		{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
		{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
	},
	tail: []int{31, 30},
}

func verifySHA512Crypt(hash, password string) bool {
	return sha512Crypt.verify(hash, password)
}

func verifySHA256Crypt(hash, password string) bool {
	return sha256Crypt.verify(hash, password)
}

// verify recomputes the hash with the salt and rounds stored in it and
// compares the whole string, which is how crypt(3) is used: a stored value
// that crypt could not have produced (a salt longer than 16 characters,
// rounds written with leading zeros) never matches.
func (v shaCryptVariant) verify(stored, password string) bool {
	salt, rounds, custom, ok := v.parse(stored)
	if !ok {
		return false
	}
	got := v.crypt(password, salt, rounds, custom)
	return subtle.ConstantTimeCompare([]byte(got), []byte(stored)) == 1
}

// parse reads the salt and rounds of a stored hash. Rounds above
// MaxSHACryptRounds are refused; below the minimum they count as the
// minimum, as the specification says.
func (v shaCryptVariant) parse(stored string) (salt string, rounds int, custom, ok bool) {
	rest, ok := strings.CutPrefix(stored, v.prefix)
	if !ok {
		return "", 0, false, false
	}
	rounds = shaCryptDefaultRounds
	if r, found := strings.CutPrefix(rest, "rounds="); found {
		digits, after, found := strings.Cut(r, "$")
		// ParseUint takes no sign, so this is digits only.
		n, err := strconv.ParseUint(digits, 10, 64)
		if !found || err != nil || n > MaxSHACryptRounds {
			return "", 0, false, false
		}
		rounds, custom, rest = max(int(n), shaCryptMinRounds), true, after
	}
	salt, _, _ = strings.Cut(rest, "$")
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	return salt, rounds, custom, true
}

// crypt is the algorithm of the specification; the step numbers are its.
func (v shaCryptVariant) crypt(password, salt string, rounds int, custom bool) string {
	pw, sl := []byte(password), []byte(salt)
	// Steps 4-8: digest B of password, salt, password.
	b := v.newSum()
	b.Write(pw)
	b.Write(sl)
	b.Write(pw)
	sumB := b.Sum(nil)

	// Steps 1-3 and 9-12: digest A.
	a := v.newSum()
	a.Write(pw)
	a.Write(sl)
	writeRepeated(a, sumB, len(pw))
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(sumB)
		} else {
			a.Write(pw)
		}
	}
	sumA := a.Sum(nil)

	// Steps 13-16: the P sequence, from the password repeated.
	dp := v.newSum()
	for range pw {
		dp.Write(pw)
	}
	p := repeatTo(dp.Sum(nil), len(pw))

	// Steps 17-20: the S sequence, from the salt repeated 16+A[0] times.
	ds := v.newSum()
	for i := 0; i < 16+int(sumA[0]); i++ {
		ds.Write(sl)
	}
	s := repeatTo(ds.Sum(nil), len(sl))

	// Step 21: the rounds.
	c := sumA
	h := v.newSum()
	for i := 0; i < rounds; i++ {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}

	// Step 22: the output string.
	var out strings.Builder
	out.WriteString(v.prefix)
	if custom {
		out.WriteString("rounds=")
		out.WriteString(strconv.Itoa(rounds))
		out.WriteByte('$')
	}
	out.WriteString(salt)
	out.WriteByte('$')
	for _, g := range v.order {
		crypt64(&out, uint(c[g[0]])<<16|uint(c[g[1]])<<8|uint(c[g[2]]), 4)
	}
	var w uint
	for _, i := range v.tail {
		w = w<<8 | uint(c[i])
	}
	crypt64(&out, w, len(v.tail)+1)
	return out.String()
}

// writeRepeated adds n bytes of sum repeated (steps 9-10).
func writeRepeated(h hash.Hash, sum []byte, n int) {
	for ; n > len(sum); n -= len(sum) {
		h.Write(sum)
	}
	h.Write(sum[:n])
}

// repeatTo returns n bytes of sum repeated (steps 16 and 20).
func repeatTo(sum []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, sum[:min(len(sum), n-len(out))]...)
	}
	return out
}

// crypt64 writes the n low 6-bit groups of w, least significant first,
// in crypt(3)'s alphabet.
func crypt64(out *strings.Builder, w uint, n int) {
	const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for ; n > 0; n-- {
		out.WriteByte(alphabet[w&0x3f])
		w >>= 6
	}
}

// Argon2 bounds. A login runs one hash; these keep a hostile or mistaken
// line from taking more than about a second and 256 MiB. Dovecot's
// default is m=65536 (64 MiB), t=3, p=1.
const (
	MaxArgon2Memory  = 256 * 1024 // KiB
	MaxArgon2Time    = 16
	MaxArgon2Threads = 16
	maxArgon2Salt    = 64
	maxArgon2Key     = 128
)

func verifyArgon2id(hash, password string) bool {
	return verifyArgon2(hash, password, "argon2id", argon2.IDKey)
}

func verifyArgon2i(hash, password string) bool {
	return verifyArgon2(hash, password, "argon2i", argon2.Key)
}

// argon2Params is a parsed Argon2 hash.
type argon2Params struct {
	memory, time uint32 // KiB, passes
	threads      uint8
	salt, sum    []byte
}

// verifyArgon2 checks the PHC string that Dovecot (through libsodium) and
// the reference argon2 tool write:
//
//	$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>
//
// with salt and hash in base64 without padding. Only version 19 (1.3)
// exists in practice, and it is the only one golang.org/x/crypto computes.
func verifyArgon2(stored, password, variant string, key func(pw, salt []byte, t, m uint32, p uint8, n uint32) []byte) bool {
	a, ok := parseArgon2(stored, variant)
	if !ok {
		return false
	}
	got := key([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.sum)))
	return subtle.ConstantTimeCompare(got, a.sum) == 1
}

// parseArgon2 reads a PHC string of variant and refuses parameters
// outside the caps.
func parseArgon2(stored, variant string) (argon2Params, bool) {
	var a argon2Params
	f := strings.Split(stored, "$")
	if len(f) != 6 || f[0] != "" || f[1] != variant || f[2] != "v=19" {
		return a, false
	}
	// Memory in KiB, passes (time) and lanes (parallelism), in this order.
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return a, false
	}
	var mtp [3]uint64
	for i, want := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], want)
		if !ok {
			return a, false
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return a, false
		}
		mtp[i] = n
	}
	m, t, p := mtp[0], mtp[1], mtp[2]
	if m > MaxArgon2Memory || t < 1 || t > MaxArgon2Time || p < 1 || p > MaxArgon2Threads || m < 8*p {
		return a, false
	}
	if strings.ContainsAny(f[4]+f[5], "\r\n") {
		// The decoder skips line ends; a hash has none.
		return a, false
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err1 := b64.DecodeString(f[4])
	sum, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(salt) > maxArgon2Salt || len(sum) < 4 || len(sum) > maxArgon2Key {
		return a, false
	}
	return argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, sum: sum}, true
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
