package userdb

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// The test vectors published with the specification ("Unix crypt using
// SHA-256 and SHA-512"), which glibc and libxcrypt reproduce.
var shaCryptSpecVectors = []struct{ setting, password, want string }{
	{"$5$saltstring", "Hello world!",
		"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
	{"$5$rounds=10000$saltstringsaltstring", "Hello world!",
		"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
	{"$5$rounds=5000$toolongsaltstring", "This is just a test",
		"$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
	{"$5$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
		"$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
	{"$5$rounds=77777$short", "we have a short salt string but not a short password",
		"$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
	{"$5$rounds=123456$asaltof16chars..", "a short string",
		"$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
	{"$5$rounds=10$roundstoolow", "the minimum number is still observed",
		"$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
	{"$6$saltstring", "Hello world!",
		"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
		"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test",
		"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
		"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"$6$rounds=77777$short", "we have a short salt string but not a short password",
		"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"$6$rounds=123456$asaltof16chars..", "a short string",
		"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed",
		"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

// TestSHACryptSpecificationVectors computes each vector from its setting,
// and verifies the result as a stored hash under both scheme names.
func TestSHACryptSpecificationVectors(t *testing.T) {
	for _, v := range shaCryptSpecVectors {
		variant, scheme := sha512Crypt, "{SHA512-CRYPT}"
		if strings.HasPrefix(v.setting, "$5$") {
			variant, scheme = sha256Crypt, "{SHA256-CRYPT}"
		}
		rest := strings.TrimPrefix(v.setting, variant.prefix)
		rounds, custom := shaCryptDefaultRounds, false
		if r, ok := strings.CutPrefix(rest, "rounds="); ok {
			var n int
			digits, after, _ := strings.Cut(r, "$")
			for _, c := range digits {
				n = n*10 + int(c-'0')
			}
			rounds, custom, rest = max(n, shaCryptMinRounds), true, after
		}
		salt := rest[:min(len(rest), shaCryptMaxSalt)]
		if got := variant.crypt(v.password, salt, rounds, custom); got != v.want {
			t.Errorf("crypt(%q, %q)\n got %s\nwant %s", v.password, v.setting, got, v.want)
		}
		for _, h := range []string{scheme + v.want, "{CRYPT}" + v.want, v.want} {
			if !(&User{Hash: h}).Verify(v.password) {
				t.Errorf("Verify(%q, %q) = false", h, v.password)
			}
			if (&User{Hash: h}).Verify(v.password + "x") {
				t.Errorf("Verify(%q) accepts a wrong password", h)
			}
		}
	}
}

// Made on Debian 12 with openssl passwd -5/-6 -salt and mkpasswd (whois),
// which use OpenSSL's and libxcrypt's implementations.
var shaCryptMachineVectors = []struct{ hash, password string }{
	{"$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0", "hello"},
	{"$5$saltsalt$kfE3pS1dKPPHrilLCLWxLECEVLX8Au49cWIQg7GMQ05", "hello"},
	{"$6$rounds=7000$saltysalt$0yoaelkgUFw46O76SfBdy6SjKFYGZvoa9witOdlkidYLurGv2D6hmyy7gAQ3lL/5ZPGIgePpWDSEyn7GeDssl.", "Hello world!"},
	{"$5$abcdefgh$PMzeX.3Tb43iNPh8ENNzPM9M7q/BLyRKM1Djd5s4Nu8", "pässword"},
	{"$6$rounds=1000$toolongsaltstrin$sesQxVr.eO8J/1tYcwFWM0XaMVaHFLetz9ssK1oNSPUQgLRm8v3S4i6CgxB9aqGOAFFEMnB2V1gvxEm/Gv2gw/", "Hello world!"},
}

func TestSHACryptMachineVectors(t *testing.T) {
	for _, v := range shaCryptMachineVectors {
		if !(&User{Hash: v.hash}).Verify(v.password) {
			t.Errorf("Verify(%q, %q) = false", v.hash, v.password)
		}
	}
}

// TestSHACryptAgainstOpenSSL compares with openssl passwd on random
// passwords and salts of every length up to the limits, when openssl is
// installed: 0, 1 and 63-65 byte passwords cross the digest sizes.
func TestSHACryptAgainstOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	const saltChars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for i, n := range []int{1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200} {
		b := make([]byte, n)
		rand.Read(b)
		pw := hex.EncodeToString(b)[:n]
		salt := make([]byte, 1+i%shaCryptMaxSalt)
		rand.Read(salt)
		for j := range salt {
			salt[j] = saltChars[int(salt[j])%len(saltChars)]
		}
		for _, flag := range []string{"-5", "-6"} {
			out, err := exec.Command(openssl, "passwd", flag, "-salt", string(salt), pw).Output()
			if err != nil {
				t.Fatalf("openssl passwd: %v", err)
			}
			h := strings.TrimSpace(string(out))
			if !(&User{Hash: h}).Verify(pw) {
				t.Errorf("openssl passwd %s -salt %s %q = %s: Verify says no", flag, salt, pw, h)
			}
		}
	}
}

// TestSHACryptAgainstMkpasswd checks custom rounds against libxcrypt's
// mkpasswd (Debian package whois), when installed.
func TestSHACryptAgainstMkpasswd(t *testing.T) {
	mkpasswd, err := exec.LookPath("mkpasswd")
	if err != nil {
		t.Skip("mkpasswd is not installed")
	}
	for _, c := range []struct {
		method string
		rounds string
	}{{"sha-512", "1000"}, {"sha-256", "1000"}, {"sha-512", "12345"}, {"sha-256", "5000"}} {
		pw := "pw " + c.method + " " + c.rounds
		out, err := exec.Command(mkpasswd, "-m", c.method, "-R", c.rounds, pw).Output()
		if err != nil {
			t.Fatalf("mkpasswd: %v", err)
		}
		h := strings.TrimSpace(string(out))
		if !(&User{Hash: h}).Verify(pw) || (&User{Hash: h}).Verify(pw+"!") {
			t.Errorf("mkpasswd %s -R %s = %s: Verify disagrees", c.method, c.rounds, h)
		}
	}
}

func TestSHACryptMalformed(t *testing.T) {
	good := "$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0"
	for _, h := range []string{
		"{SHA512-CRYPT}$5$saltsalt$kfE3pS1dKPPHrilLCLWxLECEVLX8Au49cWIQg7GMQ05", // wrong variant for the scheme
		"{SHA256-CRYPT}" + good,
		"$6$saltsalt$" + strings.Repeat("A", 86),
		"$6$saltsalt$",
		"$6$saltsalt",
		"$6$",
		"$6$rounds=$saltsalt$x",
		"$6$rounds=+5000$saltsalt$x",
		"$6$rounds=-1$saltsalt$x",
		"$6$rounds=5000",
		"$6$rounds=99999999999999999999999$saltsalt$x",
		good + "x",
		good[:len(good)-1],
		// A salt longer than 16 characters is not what crypt writes.
		"$6$saltsaltsaltsaltX$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0",
		// Leading zeros: crypt would write rounds=5000.
		"$6$rounds=05000$saltsalt$x",
	} {
		if (&User{Hash: h}).Verify("hello") {
			t.Errorf("Verify(%q) = true", h)
		}
	}
}

// TestSHACryptRoundsCap: a stored hash with more rounds than the cap never
// matches and is refused before any hashing, so it takes no time (the
// specification's maximum would take minutes).
func TestSHACryptRoundsCap(t *testing.T) {
	// Made by mkpasswd -m sha-512 -R 1000001 -S capsalt1 pw.
	over := "$6$rounds=1000001$capsalt1$dBoxauF6qIj3r.NWj5wfSAz/4IhVnbxn9G5WgWeYkqrIdmhpGnaKKKKLrmAKad97CLPYwvgIGqWSUWh62.9D41"
	start := time.Now()
	for _, h := range []string{over, "$6$rounds=999999999$capsalt$x", "$5$rounds=1000001$capsalt$x"} {
		if (&User{Hash: h}).Verify("pw") {
			t.Errorf("Verify(%q) = true above the rounds cap", h)
		}
	}
	// Three refusals without hashing take microseconds; one million-round
	// hash alone takes about a second. The margin is wide on purpose.
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refusing hashes above the cap took %v: they were computed", d)
	}
	// At the cap the hash is computed: a hash with exactly MaxSHACryptRounds
	// rounds made by this implementation verifies.
	if testing.Short() {
		return
	}
	at := sha256Crypt.crypt("pw", "capsalt", MaxSHACryptRounds, true)
	if !strings.HasPrefix(at, "$5$rounds=1000000$capsalt$") || !(&User{Hash: at}).Verify("pw") {
		t.Errorf("hash at the cap %s does not verify", at)
	}
}

// TestPasswordLengthCap: SHA-crypt's work grows with the password length,
// so longer passwords than MaxPasswordLength never match, in every scheme.
func TestPasswordLengthCap(t *testing.T) {
	long := strings.Repeat("p", MaxPasswordLength)
	h := sha512Crypt.crypt(long, "salt", shaCryptDefaultRounds, false)
	if !(&User{Hash: h}).Verify(long) {
		t.Fatal("a password of exactly MaxPasswordLength bytes must verify")
	}
	if (&User{Hash: "{PLAIN}" + long + "p"}).Verify(long + "p") {
		t.Fatal("a password longer than MaxPasswordLength must never match")
	}
}

// Made by the reference implementation (Debian package argon2):
// echo -n PW | argon2 SALT -id|-i -t T -m LOG2M -p P -e.
var argon2Vectors = []struct{ hash, password string }{
	{"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$qFW9WhT6SIj99YBQsXv6kgMdN2VgFe44UCfrbkMujD0", "correct horse"},
	{"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$c29tZXNhbHQ$r0xtsPFirf+QwyF46uLcF4r5oprvwemTvwSocHYtFNE", "pw"},
}

func TestArgon2(t *testing.T) {
	for _, v := range argon2Vectors {
		if !(&User{Hash: v.hash}).Verify(v.password) {
			t.Errorf("Verify(%q, %q) = false", v.hash, v.password)
		}
		if (&User{Hash: v.hash}).Verify(v.password + "x") {
			t.Errorf("Verify(%q) accepts a wrong password", v.hash)
		}
		if !KnownScheme(v.hash) {
			t.Errorf("KnownScheme(%q) = false", v.hash)
		}
	}
	// The variant inside must be the scheme's.
	id := strings.TrimPrefix(argon2Vectors[0].hash, "{ARGON2ID}")
	if (&User{Hash: "{ARGON2I}" + id}).Verify("correct horse") {
		t.Error("an argon2id hash under {ARGON2I} matched")
	}
}

// TestArgon2Caps: parameters above the caps are refused without hashing.
func TestArgon2Caps(t *testing.T) {
	const salt, sum = "c29tZXNhbHQ", "r0xtsPFirf+QwyF46uLcF4r5oprvwemTvwSocHYtFNE"
	start := time.Now()
	for _, p := range []string{
		"m=262145,t=1,p=1",     // memory above MaxArgon2Memory
		"m=4294967295,t=1,p=1", // 4 TiB
		"m=4096,t=17,p=1",      // time above MaxArgon2Time
		"m=4096,t=4294967295,p=1",
		"m=4096,t=1,p=17", // lanes above MaxArgon2Threads
		"m=4096,t=0,p=1",
		"m=4096,t=1,p=0",
		"m=8,t=1,p=2", // less than 8 KiB per lane
		"m=4096,p=1,t=1",
		"m=4096,t=1",
		"m=4096,t=1,p=1,x=1",
		"m=04096x,t=1,p=1",
		"m=,t=1,p=1",
		"m=+4096,t=1,p=1",
	} {
		h := "{ARGON2I}$argon2i$v=19$" + p + "$" + salt + "$" + sum
		if (&User{Hash: h}).Verify("pw") {
			t.Errorf("Verify(%q) = true", h)
		}
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refusing parameters above the caps took %v: something was hashed", d)
	}
	for _, h := range []string{
		"{ARGON2I}$argon2i$v=16$m=4096,t=2,p=2$" + salt + "$" + sum,
		"{ARGON2I}$argon2i$m=4096,t=2,p=2$" + salt + "$" + sum,
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + salt + "=$" + sum,      // padding
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + salt + "$" + sum + "$", // extra field
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$c2FsdA$" + sum,             // 4-byte salt
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + salt + "$AAAA",         // 3-byte hash
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + strings.Repeat("A", 100) + "$" + sum,
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + salt + "$" + strings.Repeat("A", 200),
		"{ARGON2I}argon2i$v=19$m=4096,t=2,p=2$" + salt + "$" + sum,
		"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=2$" + salt + "\n$" + sum, // the decoder would skip it
	} {
		if (&User{Hash: h}).Verify("pw") {
			t.Errorf("Verify(%q) = true", h)
		}
	}
	// At the caps the hash is computed: the bounds are not off by one.
	// Memory at its cap is 256 MiB and a fraction of a second.
	if testing.Short() {
		return
	}
	for _, c := range []struct {
		m, t uint32
		p    uint8
	}{{256, MaxArgon2Time, MaxArgon2Threads}, {MaxArgon2Memory, 1, 1}} {
		s := []byte("saltsaltsalt")
		sum := argon2.Key([]byte("pw"), s, c.t, c.m, c.p, 32)
		h := fmt.Sprintf("{ARGON2I}$argon2i$v=19$m=%d,t=%d,p=%d$%s$%s", c.m, c.t, c.p,
			base64.RawStdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(sum))
		if !(&User{Hash: h}).Verify("pw") {
			t.Errorf("%s at the caps does not verify", h)
		}
	}
}

func TestKnownScheme(t *testing.T) {
	for h, want := range map[string]bool{
		"{BLF-CRYPT}$2y$10$x":    true,
		"$2b$10$x":               true,
		"$6$salt$x":              true,
		"{CRYPT}$5$salt$x":       true,
		"$y$j9T$salt$x":          false, // yescrypt: PAM's business
		"$1$salt$x":              false,
		"{PLAIN}x":               true,
		"{SSHA}x":                false,
		"{PLAIN}":                false,
		"":                       false,
		"{ARGON2ID}$argon2id$..": true,
	} {
		if got := KnownScheme(h); got != want {
			t.Errorf("KnownScheme(%q) = %v", h, got)
		}
	}
}

// FuzzVerify: any stored hash and password, including the malformed
// ones a hostile or corrupt users file holds, give an answer without
// panicking, and the parsers never let parameters past the caps.
func FuzzVerify(f *testing.F) {
	for _, v := range shaCryptMachineVectors {
		f.Add(v.hash, v.password)
	}
	for _, v := range argon2Vectors {
		f.Add(v.hash, v.password)
	}
	f.Add("{BLF-CRYPT}$2y$04$abcdefghijklmnopqrstuu5Ch5wYg4KZ2PkWmZqG7aQ4gGxE0cC2e", "pw")
	f.Add("$6$rounds=1000$s$x", "pw")
	f.Add("{PLAIN}pw", "pw")
	f.Fuzz(func(t *testing.T, hash, password string) {
		KnownScheme(hash)
		_, h := splitScheme(hash)
		cheap := true
		for _, v := range []shaCryptVariant{sha256Crypt, sha512Crypt} {
			if salt, rounds, _, ok := v.parse(h); ok {
				if rounds > MaxSHACryptRounds || rounds < shaCryptMinRounds || len(salt) > shaCryptMaxSalt {
					t.Fatalf("%q parsed to rounds %d salt %q", h, rounds, salt)
				}
				// The caps allow a second of work: right for a login,
				// too slow for a fuzzer.
				cheap = cheap && rounds <= 10000
			}
		}
		for _, variant := range []string{"argon2i", "argon2id"} {
			if a, ok := parseArgon2(h, variant); ok {
				if a.memory > MaxArgon2Memory || a.time > MaxArgon2Time || a.threads > MaxArgon2Threads ||
					a.time < 1 || a.threads < 1 || len(a.salt) > maxArgon2Salt || len(a.sum) > maxArgon2Key {
					t.Fatalf("%q parsed to %+v", h, a)
				}
				cheap = cheap && uint64(a.memory)*uint64(a.time) <= 64*1024
			}
		}
		if strings.HasPrefix(h, "$2") {
			cheap = false // bcrypt's own parser; a cost of 16 takes seconds
		}
		if cheap {
			(&User{Hash: hash}).Verify(password)
		}
	})
}
