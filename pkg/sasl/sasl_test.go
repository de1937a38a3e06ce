package sasl

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// run drives an exchange the way a protocol engine does and returns the
// challenges sent, decoded.
func run(t *testing.T, mech, initial string, lines ...string) (Credentials, []string, error) {
	t.Helper()
	s, err := NewServer(mech)
	if err != nil {
		return Credentials{}, nil, err
	}
	var chals []string
	chal, done, err := s.Start(initial)
	for !done && err == nil {
		c, derr := base64.StdEncoding.DecodeString(chal)
		if derr != nil {
			t.Fatalf("challenge %q is not base64", chal)
		}
		chals = append(chals, string(c))
		if len(lines) == 0 {
			t.Fatalf("exchange wants more lines after challenges %q", chals)
		}
		chal, done, err = s.Next(lines[0])
		lines = lines[1:]
	}
	if len(lines) > 0 {
		t.Fatalf("exchange ended with %d lines left", len(lines))
	}
	return s.Credentials(), chals, err
}

func TestPlain(t *testing.T) {
	want := Credentials{Mechanism: "PLAIN", Username: "alice@example.org", Password: "correct horse"}
	// RFC 4954 §4: initial response on the command line.
	c, chals, err := run(t, "PLAIN", b64("\x00alice@example.org\x00correct horse"))
	if err != nil || c != want || len(chals) != 0 {
		t.Fatalf("initial response: %+v %q %v", c, chals, err)
	}
	// Without it the server sends an empty challenge first.
	c, chals, err = run(t, "plain", "", b64("\x00alice@example.org\x00correct horse"))
	if err != nil || c != want || len(chals) != 1 || chals[0] != "" {
		t.Fatalf("after challenge: %+v %q %v", c, chals, err)
	}
	// RFC 4616 §2: an authzid equal to the authcid is no proxy request.
	c, _, err = run(t, "PLAIN", b64("alice@example.org\x00alice@example.org\x00correct horse"))
	want.Authzid = "alice@example.org"
	if err != nil || c != want {
		t.Fatalf("authzid = authcid: %+v %v", c, err)
	}
	// UTF-8 in the identity and password (RFC 4616's SAFE).
	c, _, err = run(t, "PLAIN", b64("\x00jörg\x00pässwörd ✓"))
	if err != nil || c.Username != "jörg" || c.Password != "pässwörd ✓" {
		t.Fatalf("UTF-8: %+v %v", c, err)
	}
}

// HOSTILE 31: an authzid that differs from the authcid is refused, in any
// case or form.
func TestPlainAuthzidMismatch(t *testing.T) {
	for _, msg := range []string{
		"admin\x00alice\x00alicepw",
		"Alice\x00alice\x00alicepw",
		"alice \x00alice\x00alicepw",
		"alice@example.org\x00alice\x00alicepw",
	} {
		c, _, err := run(t, "PLAIN", b64(msg))
		if !errors.Is(err, ErrAuthzid) || c.Username != "" || c.Password != "" {
			t.Errorf("%q: %+v %v, want ErrAuthzid and no credentials", msg, c, err)
		}
	}
}

// HOSTILE 32: malformed PLAIN messages.
func TestPlainMalformed(t *testing.T) {
	for _, msg := range []string{
		"",                        // empty
		"alice",                   // no NUL
		"\x00alice",               // one NUL
		"alicepw\x00",             // one NUL
		"\x00alice\x00",           // empty password
		"\x00\x00pw",              // empty authcid
		"\x00\x00",                // both empty
		"\x00alice\x00pw\x00",     // three NULs
		"\x00alice\x00pw\x00more", // extra field
		"\x00\x00alice\x00pw",     // NUL inside
		"\x00al\xffice\x00pw",     // invalid UTF-8 in authcid
		"\x00alice\x00p\xc3w",     // invalid UTF-8 in password
		"\xfe\x00alice\x00pw",     // invalid UTF-8 in authzid
	} {
		for _, initial := range []bool{true, false} {
			var err error
			var c Credentials
			if initial {
				ir := b64(msg)
				if msg == "" {
					ir = "="
				}
				c, _, err = run(t, "PLAIN", ir)
			} else {
				c, _, err = run(t, "PLAIN", "", b64(msg))
			}
			if !errors.Is(err, ErrMalformed) || c.Username != "" || c.Password != "" {
				t.Errorf("%q (initial %v): %+v %v, want ErrMalformed", msg, initial, c, err)
			}
		}
	}
}

func TestBase64Strict(t *testing.T) {
	good := b64("\x00alice\x00pw") // AGFsaWNlAHB3
	for _, line := range []string{
		"AGFsaWNlAHB3=",    // padding where none belongs
		"AGFsaWNlAHB",      // truncated
		"AGFsaWNlAHB3A",    // odd length
		"AGFsa WNlAHB3",    // space
		" " + good,         // leading space
		good + " ",         // trailing space
		"AGFsaWNl\r\nAHB3", // line break: the decoder would skip it
		"AGFsaWNl\nAHB3",
		"AGFsaWNlAHB3\r",
		"AGFs-WNlAHB3", // URL alphabet
		"AGFs_WNlAHB3",
		"AGFsaWNlAHB3\x00",
		"=",              // only for an initial response
		"AA==AA==",       // padding in the middle
		"AGFsaWNlAHB3==", // too much padding
		"AGEAYh==",       // "\x00a\x00b" with non-zero bits after the last byte
	} {
		_, _, err := run(t, "PLAIN", "", line)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", line, err)
		}
	}
	if _, _, err := run(t, "PLAIN", "", good); err != nil {
		t.Fatalf("%q: %v", good, err)
	}
	if _, _, err := run(t, "PLAIN", "", "AGEAYg=="); err != nil {
		t.Fatalf("AGEAYg==: %v", err)
	}
}

func TestCancel(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		_, _, err := run(t, mech, "", "*")
		if !errors.Is(err, ErrCancelled) {
			t.Errorf("%s *: %v", mech, err)
		}
	}
	// Cancel at the password prompt of LOGIN.
	if _, _, err := run(t, "LOGIN", "", b64("alice"), "*"); !errors.Is(err, ErrCancelled) {
		t.Errorf("LOGIN cancel at password: %v", err)
	}
	// "*" as an initial response is no cancel: it is not base64.
	if _, _, err := run(t, "PLAIN", "*"); !errors.Is(err, ErrMalformed) {
		t.Errorf("PLAIN initial *: %v", err)
	}
}

func TestLogin(t *testing.T) {
	want := Credentials{Mechanism: "LOGIN", Username: "alice", Password: "secret"}
	c, chals, err := run(t, "LOGIN", "", b64("alice"), b64("secret"))
	if err != nil || c != want {
		t.Fatalf("%+v %v", c, err)
	}
	if strings.Join(chals, "|") != "Username:|Password:" {
		t.Fatalf("challenges %q", chals)
	}
	// The encoded prompts are the ones Postfix and Dovecot send.
	s, _ := NewServer("login")
	if chal, _, _ := s.Start(""); chal != "VXNlcm5hbWU6" {
		t.Fatalf("username prompt %q", chal)
	}
	if chal, _, _ := s.Next(b64("alice")); chal != "UGFzc3dvcmQ6" {
		t.Fatalf("password prompt %q", chal)
	}
	// The user name as initial response.
	c, chals, err = run(t, "LOGIN", b64("alice"), b64("secret"))
	if err != nil || c != want || strings.Join(chals, "|") != "Password:" {
		t.Fatalf("initial response: %+v %q %v", c, chals, err)
	}
}

func TestLoginMalformed(t *testing.T) {
	cases := []struct {
		initial string
		lines   []string
	}{
		{"", []string{""}},                            // empty user name
		{"=", nil},                                    // empty initial user name
		{"", []string{b64("alice"), ""}},              // empty password
		{"", []string{b64("al\x00ice")}},              // NUL in user name
		{"", []string{b64("alice"), b64("p\x00w")}},   // NUL in password
		{"", []string{b64("\xff")}},                   // invalid UTF-8
		{"", []string{b64("alice"), "not base64!"}},   // invalid base64
		{"not base64!", nil},                          // invalid initial response
		{"", []string{b64("alice"), b64("pw") + "="}}, // bad padding
	}
	for _, c := range cases {
		cr, _, err := run(t, "LOGIN", c.initial, c.lines...)
		if !errors.Is(err, ErrMalformed) || cr.Username != "" || cr.Password != "" {
			t.Errorf("%q %q: %+v %v", c.initial, c.lines, cr, err)
		}
	}
}

// A response past MaxResponse is refused before decoding; one exactly at
// it is decoded.
func TestResponseLimit(t *testing.T) {
	at := "\x00alice\x00" + strings.Repeat("p", MaxResponse-len("\x00alice\x00"))
	c, _, err := run(t, "PLAIN", b64(at))
	if err != nil || len(c.Password) != MaxResponse-7 {
		t.Fatalf("response of exactly MaxResponse bytes: %v", err)
	}
	over := at + "ppp"
	for _, initial := range []bool{true, false} {
		var err error
		if initial {
			_, _, err = run(t, "PLAIN", b64(over))
		} else {
			_, _, err = run(t, "PLAIN", "", b64(over))
		}
		if !errors.Is(err, ErrTooLong) {
			t.Errorf("response over MaxResponse (initial %v): %v", initial, err)
		}
	}
	// HOSTILE 32: a 100 KB initial response.
	if _, _, err := run(t, "PLAIN", strings.Repeat("QUFB", 100<<10/4)); !errors.Is(err, ErrTooLong) {
		t.Errorf("100 KB: %v", err)
	}
	if _, _, err := run(t, "LOGIN", "", strings.Repeat("A", MaxLine+4)); !errors.Is(err, ErrTooLong) {
		t.Errorf("LOGIN over MaxLine: %v", err)
	}
}

func TestUnknownMechanismAndState(t *testing.T) {
	for _, m := range []string{"CRAM-MD5", "XOAUTH2", "", "PLAIN ", "PLAIN\x00"} {
		if _, err := NewServer(m); !errors.Is(err, ErrUnknownMechanism) {
			t.Errorf("NewServer(%q): %v", m, err)
		}
	}
	s, _ := NewServer("PLAIN")
	if _, _, err := s.Next(b64("\x00a\x00b")); !errors.Is(err, ErrState) {
		t.Errorf("Next before Start: %v", err)
	}
	s, _ = NewServer("PLAIN")
	if _, done, err := s.Start(b64("\x00a\x00b")); !done || err != nil {
		t.Fatal(done, err)
	}
	if _, _, err := s.Start(""); !errors.Is(err, ErrState) {
		t.Errorf("second Start: %v", err)
	}
	if s.Credentials().Username != "" {
		t.Error("credentials survive a failed exchange")
	}
	// After a failure every call returns the same error.
	s, _ = NewServer("LOGIN")
	s.Start("")
	s.Next("*")
	if _, _, err := s.Next(b64("alice")); !errors.Is(err, ErrCancelled) {
		t.Errorf("Next after cancel: %v", err)
	}
	if got := Mechanisms(); strings.Join(got, " ") != "PLAIN LOGIN" {
		t.Errorf("Mechanisms = %q", got)
	}
}

// FuzzServer drives both mechanisms with arbitrary lines: no panic, and
// whatever completes satisfies every rule of the package.
func FuzzServer(f *testing.F) {
	f.Add("PLAIN", b64("\x00alice\x00pw"), "", "")
	f.Add("PLAIN", "", b64("admin\x00alice\x00pw"), "")
	f.Add("PLAIN", "=", "", "")
	f.Add("LOGIN", "", b64("alice"), b64("pw"))
	f.Add("LOGIN", b64("alice"), b64("pw"), "")
	f.Add("LOGIN", "", "*", "")
	f.Add("PLAIN", "AGFsaWNl\r\nAHB3", "", "")
	f.Fuzz(func(t *testing.T, mech, initial, l1, l2 string) {
		s, err := NewServer(mech)
		if err != nil {
			return
		}
		_, done, err := s.Start(initial)
		for _, l := range []string{l1, l2} {
			if done || err != nil {
				break
			}
			_, done, err = s.Next(l)
		}
		c := s.Credentials()
		if !done {
			if c.Username != "" || c.Password != "" || c.Authzid != "" {
				t.Fatalf("credentials %+v without completion", c)
			}
			return
		}
		if err != nil {
			t.Fatalf("done with error %v", err)
		}
		for _, f := range []string{c.Username, c.Password} {
			if f == "" || strings.IndexByte(f, 0) >= 0 || !utf8.ValidString(f) || len(f) > MaxResponse {
				t.Fatalf("field %q breaks the rules", f)
			}
		}
		if c.Authzid != "" && c.Authzid != c.Username {
			t.Fatalf("authzid %q for %q", c.Authzid, c.Username)
		}
	})
}
