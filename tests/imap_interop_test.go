package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// imapStateScript prints, as JSON, every folder of an IMAP account with its
// UIDVALIDITY and the flags of each message by UID. Optional argv[1] is a
// JSON list of [folder, uid, "+FLAGS"|"-FLAGS", "(flags)"] changes made first.
const imapStateScript = `
import os, imaplib, json, re, sys
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]), timeout=20)
m.login(os.environ["IMAP_USER"], os.environ["IMAP_PASS"])
for box, uid, op, flags in (json.loads(sys.argv[1]) if len(sys.argv) > 1 else []):
    typ, _ = m.select('"%s"' % box)
    assert typ == "OK", box
    typ, data = m.uid("STORE", str(uid), op, flags)
    assert typ == "OK", (typ, data)
typ, boxes = m.list()
assert typ == "OK", boxes
state = {}
for line in boxes:
    mm = re.match(rb'\((.*?)\) (?:NIL|"(?:[^"\\]|\\.)*") (.*)$', line)
    name = mm.group(2).decode()
    if name.startswith('"'):
        name = name[1:-1]
    if b"\\Noselect" in mm.group(1) or b"\\NonExistent" in mm.group(1):
        continue
    typ, data = m.select('"%s"' % name, readonly=True)
    assert typ == "OK", (name, data)
    uv = m.response("UIDVALIDITY")[1][0].decode()
    msgs = {}
    if int(data[0]) > 0:
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
        for d in data:
            if isinstance(d, tuple):
                d = d[0]
            u = re.search(rb"UID (\d+)", d).group(1).decode()
            f = re.search(rb"FLAGS \((.*?)\)", d).group(1).decode().split()
            msgs[u] = sorted(x for x in f if x != "\\Recent")
    state[name] = {"uidvalidity": uv, "messages": msgs}
m.logout()
print(json.dumps(state))
`

type imapFolder struct {
	UIDValidity string              `json:"uidvalidity"`
	Messages    map[string][]string `json:"messages"`
}

// imapState logs in to an IMAP server on a loopback port, makes the given
// flag changes, and returns every folder's UIDVALIDITY and flags by UID.
func imapState(t *testing.T, port, user, pass string, changes ...[]any) map[string]imapFolder {
	t.Helper()
	args := []string{"-c", imapStateScript}
	if len(changes) > 0 {
		b, _ := json.Marshal(changes)
		args = append(args, string(b))
	}
	cmd := exec.Command("python3", args...)
	cmd.Env = append(os.Environ(), "PORT="+port, "IMAP_USER="+user, "IMAP_PASS="+pass)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("imap state on port %s: %v\n%s%s", port, err, out, stderr)
	}
	var st map[string]imapFolder
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("imap state: %v\n%s", err, out)
	}
	return st
}

// imapPython runs a Python script with imaplib against a loopback port.
func imapPython(t *testing.T, port, user, pass, script string) string {
	t.Helper()
	cmd := exec.Command("python3", "-c", `
import os, imaplib, sys
def check(cond, what):
    if not cond:
        print("FAIL", what); sys.exit(1)
    print("ok", what)
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]), timeout=20)
check(m.login(os.environ["IMAP_USER"], os.environ["IMAP_PASS"])[0] == "OK", "login")
`+script+`
m.logout()
`)
	cmd.Env = append(os.Environ(), "PORT="+port, "IMAP_USER="+user, "IMAP_PASS="+pass)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib on port %s: %v\n%s", port, err, out)
	}
	return string(out)
}

// localMaildirs lists the message files of every folder under root by
// folder, file names sorted.
func localMaildirs(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		dir := filepath.Dir(p)
		sub := filepath.Base(dir)
		if sub != "cur" && sub != "new" {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(dir))
		out[rel] = append(out[rel], sub+"/"+info.Name())
		return nil
	})
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// maildirFlags returns the flag letters of a Maildir file name.
func maildirFlags(name string) string {
	if i := strings.LastIndex(name, ":2,"); i >= 0 {
		return name[i+3:]
	}
	return ""
}

// TestMbsync runs isync's mbsync against posthorn: a two-way sync of several
// folders, then flag changes and a deletion on the near (local Maildir) side
// and a flag change on the server, then a third run that changes nothing.
func TestMbsync(t *testing.T) {
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Skip("mbsync (isync) not installed")
	}
	s := StartSystem(t, nil)
	user, pass := "syncer@example.test", "pw-syncer@example.test"
	s.AddUser(user)
	port := portOf(s.Cfg.IMAP.Listen[0])
	sendMail(t, s, user, 3, "inbox one", "inbox two", "inbox three")
	s.WaitMessages(s.Maildir("syncer"), 3, 15*time.Second)
	imapPython(t, port, user, pass, `
for box in ("Archive", "Work"):
    check(m.create(box)[0] == "OK", "create " + box)
for i in range(2):
    typ, data = m.append("Archive", "(\\Seen)", None, ("Subject: archived %d\r\n\r\narchived body %d\r\n" % (i, i)).encode())
    check(typ == "OK", "append archive")
typ, data = m.append("Work", "(\\Flagged $Work)", None, b"Subject: work\r\n\r\nwork body\r\n")
check(typ == "OK", "append work")
`)

	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	rc := filepath.Join(dir, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount posthorn
Host 127.0.0.1
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account posthorn

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, port, user, pass, local, local)
	if err := os.WriteFile(rc, []byte(conf), 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(local, 0700); err != nil {
		t.Fatal(err)
	}
	mbsync := func(what string) string {
		t.Helper()
		cmd := exec.Command("mbsync", "-V", "-a", "-c", rc)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync (%s): %v\n%s\nposthorn log:\n%s", what, err, out, tail(s.Log(), 30))
		}
		return string(out)
	}

	// First run: everything comes down.
	out := mbsync("first run")
	got := localMaildirs(t, local)
	want := map[string]int{"INBOX": 3, "Archive": 2, "Work": 1}
	for box, n := range want {
		if len(got[box]) != n {
			t.Fatalf("after the first run local %s has %d messages, want %d: %v\n%s", box, len(got[box]), n, got, out)
		}
	}
	for _, f := range got["Archive"] {
		if !strings.Contains(maildirFlags(f), "S") {
			t.Errorf("Archive message %s lost \\Seen", f)
		}
	}
	if fl := maildirFlags(got["Work"][0]); !strings.Contains(fl, "F") {
		t.Errorf("Work message %s lost \\Flagged", got["Work"][0])
	}

	// Local changes: mark the first INBOX message seen, delete the
	// second, and flag an Archive message on the server.
	server := imapState(t, port, user, pass)
	inbox := got["INBOX"]
	first := filepath.Join(local, "INBOX", inbox[0])
	base := filepath.Base(first)
	if i := strings.LastIndex(base, ":2,"); i >= 0 {
		base = base[:i]
	}
	seen := filepath.Join(local, "INBOX", "cur", base+":2,S")
	if err := os.Rename(first, seen); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(local, "INBOX", inbox[1])); err != nil {
		t.Fatal(err)
	}
	var archiveUIDs []string
	for u := range server["Archive"].Messages {
		archiveUIDs = append(archiveUIDs, u)
	}
	sort.Strings(archiveUIDs)
	imapState(t, port, user, pass, []any{"Archive", archiveUIDs[0], "+FLAGS", `(\Flagged)`})

	out = mbsync("second run")
	server = imapState(t, port, user, pass)
	if n := len(server["INBOX"].Messages); n != 2 {
		t.Fatalf("server INBOX has %d messages after the local deletion, want 2: %v\n%s", n, server["INBOX"], out)
	}
	seenCount := 0
	for _, f := range server["INBOX"].Messages {
		for _, x := range f {
			if x == `\Seen` {
				seenCount++
			}
		}
	}
	if seenCount != 1 {
		t.Errorf("server INBOX: %d messages \\Seen, want 1: %v", seenCount, server["INBOX"])
	}
	got = localMaildirs(t, local)
	flagged := 0
	for _, f := range got["Archive"] {
		if strings.Contains(maildirFlags(f), "F") {
			flagged++
		}
	}
	if flagged != 1 {
		t.Errorf("local Archive: %d messages flagged after the server change, want 1: %v\n%s", flagged, got["Archive"], out)
	}

	// Third run: nothing left to do on either side.
	beforeLocal, beforeServer := got, server
	out = mbsync("third run")
	afterLocal, afterServer := localMaildirs(t, local), imapState(t, port, user, pass)
	if !reflect.DeepEqual(beforeLocal, afterLocal) {
		t.Errorf("the third run changed the local side:\nbefore %v\nafter  %v\n%s", beforeLocal, afterLocal, out)
	}
	if !reflect.DeepEqual(beforeServer, afterServer) {
		t.Errorf("the third run changed the server:\nbefore %v\nafter  %v\n%s", beforeServer, afterServer, out)
	}
	t.Logf("third run:\n%s", out)
}

// startDovecot runs a private Dovecot (imapd only, plaintext on a loopback
// port) over one Maildir, with one user and password, its mail processes
// running as uid:gid. It is stopped when the test ends.
func startDovecot(t *testing.T, maildir, user, pass string, uid, gid int) (port string, logPath string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	p := freePort(t)
	port = fmt.Sprint(p)
	logPath = filepath.Join(dir, "dovecot.log")
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(user+":{PLAIN}"+pass+"\n"), 0644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0755)
	os.Chown(home, uid, gid)
	conf := filepath.Join(dir, "dovecot.conf")
	text := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:%[3]s
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[4]s
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[7]s
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[8]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, logPath, maildir, passwd, uid, gid, home, p)
	if err := os.WriteFile(conf, []byte(text), 0644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dovecot", "-F", "-c", conf)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	dovelog := func() string {
		b, _ := os.ReadFile(logPath)
		return out.String() + string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("dovecot exited at start:\n%s", dovelog())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 256)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "* OK") {
				return port, logPath
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not answer on port %s within 20 s:\n%s", port, dovelog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDovecotInterop runs Debian's Dovecot imapd and posthorn's imapd over
// the same Maildir: mail delivered by posthorn and read by Dovecot, and the
// reverse, shows the same UIDVALIDITY, UIDs, flags and keywords in both;
// \Recent stays right among posthorn's sessions while Dovecot's work on
// the same mailbox (each server tracks its own).
func TestDovecotInterop(t *testing.T) {
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Skip("dovecot (dovecot-imapd) not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("the test runs Dovecot as root with a separate mail user (CI runs as root)")
	}
	ensureUser(t, "posthorn-test", false)
	vmailUID, vmailGID, _ := ensureUser(t, "phvmail-test", false)
	os.Chmod(binDir, 0755)
	s := NewSystem(t, func(c *config.Config) {
		c.MailOwner = "posthorn-test"
		c.Local.DeliveryUser = "root"
		c.Virtual.User, c.Virtual.Group = "phvmail-test", "phvmail-test"
	})
	for d := s.Dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	os.MkdirAll(filepath.Join(s.Dir, "mail"), 0750)
	os.Chown(filepath.Join(s.Dir, "mail"), vmailUID, vmailGID)
	s.Start()
	t.Cleanup(s.Stop)
	user, pass := "dovey@example.test", "pw-dovey@example.test"
	s.AddUser(user)
	maildir := s.Maildir("dovey")
	php := portOf(s.Cfg.IMAP.Listen[0])

	// Posthorn delivers and reads first, so posthorn assigns the UIDs.
	sendMail(t, s, user, 2, "one", "two")
	s.WaitMessages(maildir, 2, 15*time.Second)
	first := imapState(t, php, user, pass)
	if n := len(first["INBOX"].Messages); n != 2 {
		t.Fatalf("posthorn INBOX: %d messages, want 2: %v", n, first)
	}

	dvp, dovelog := startDovecot(t, maildir, user, pass, vmailUID, vmailGID)
	compare := func(step string) map[string]imapFolder {
		t.Helper()
		d := imapState(t, dvp, user, pass)
		p := imapState(t, php, user, pass)
		if !reflect.DeepEqual(d, p) {
			b, _ := os.ReadFile(dovelog)
			t.Errorf("%s: the servers disagree\ndovecot:  %v\nposthorn: %v\ndovecot log:\n%s", step, d, p, tail(string(b), 20))
		}
		return p
	}
	st := compare("posthorn's UIDs read by dovecot")
	if !reflect.DeepEqual(st, first) {
		t.Errorf("the state changed once dovecot read the Maildir:\nbefore %v\nafter  %v", first, st)
	}

	// A delivery read by Dovecot first: Dovecot assigns the UID.
	sendMail(t, s, user, 1, "three")
	s.WaitMessages(maildir, 3, 15*time.Second)
	d := imapState(t, dvp, user, pass)
	if n := len(d["INBOX"].Messages); n != 3 {
		t.Fatalf("dovecot INBOX: %d messages, want 3: %v", n, d)
	}
	compare("dovecot's UID for a new delivery read by posthorn")

	var uids []string
	for u := range d["INBOX"].Messages {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, j int) bool {
		return len(uids[i]) < len(uids[j]) || len(uids[i]) == len(uids[j]) && uids[i] < uids[j]
	})

	// Flags and a keyword set through Dovecot are seen by posthorn.
	imapState(t, dvp, user, pass, []any{"INBOX", uids[0], "+FLAGS", `(\Flagged $Label1)`})
	st = compare("\\Flagged and $Label1 set by dovecot")
	if f := st["INBOX"].Messages[uids[0]]; !reflect.DeepEqual(f, []string{"$Label1", `\Flagged`}) {
		t.Errorf("posthorn shows UID %s with %v, want $Label1 and \\Flagged", uids[0], f)
	}

	// And the reverse.
	imapState(t, php, user, pass, []any{"INBOX", uids[1], "+FLAGS", `(\Seen $Label2)`})
	d = imapState(t, dvp, user, pass)
	if f := d["INBOX"].Messages[uids[1]]; !reflect.DeepEqual(f, []string{"$Label2", `\Seen`}) {
		t.Errorf("dovecot shows UID %s with %v, want $Label2 and \\Seen", uids[1], f)
	}
	compare("\\Seen and $Label2 set by posthorn")

	// Removing a keyword through one is seen by the other.
	imapState(t, php, user, pass, []any{"INBOX", uids[0], "-FLAGS", `($Label1)`})
	compare("$Label1 removed by posthorn")

	// APPEND through Dovecot: posthorn shows Dovecot's UID.
	out := imapPython(t, dvp, user, pass, `
typ, data = m.append("INBOX", "(\\Answered $Label3)", None, b"Subject: appended to dovecot\r\n\r\nbody\r\n")
check(typ == "OK" and b"APPENDUID" in data[0], "append: %r" % data)
print("APPENDUID", data[0].split()[2].rstrip(b"]").decode())
`)
	appended := strings.TrimSpace(out[strings.LastIndex(out, "\nAPPENDUID ")+len("\nAPPENDUID "):])
	st = compare("APPEND through dovecot")
	if f, ok := st["INBOX"].Messages[appended]; !ok || !reflect.DeepEqual(f, []string{"$Label3", `\Answered`}) {
		t.Errorf("posthorn: UID %s (dovecot's APPENDUID) has %v (present %v), want $Label3 and \\Answered", appended, f, ok)
	}

	// APPEND through posthorn: Dovecot shows posthorn's UID.
	out = imapPython(t, php, user, pass, `
typ, data = m.append("INBOX", "(\\Draft $Label4)", None, b"Subject: appended to posthorn\r\n\r\nbody\r\n")
check(typ == "OK" and b"APPENDUID" in data[0], "append: %r" % data)
print("APPENDUID", data[0].split()[2].rstrip(b"]").decode())
`)
	appended = strings.TrimSpace(out[strings.LastIndex(out, "\nAPPENDUID ")+len("\nAPPENDUID "):])
	d = imapState(t, dvp, user, pass)
	if f, ok := d["INBOX"].Messages[appended]; !ok || !reflect.DeepEqual(f, []string{"$Label4", `\Draft`}) {
		t.Errorf("dovecot: UID %s (posthorn's APPENDUID) has %v (present %v), want $Label4 and \\Draft", appended, f, ok)
	}
	compare("APPEND through posthorn")

	// Folders created by either, with mail appended, and an expunge.
	imapPython(t, php, user, pass, `
check(m.create("FromPosthorn")[0] == "OK", "create")
check(m.append("FromPosthorn", "($Label5)", None, b"Subject: in folder\r\n\r\nbody\r\n")[0] == "OK", "append")
`)
	imapPython(t, dvp, user, pass, `
check(m.create("FromDovecot")[0] == "OK", "create")
check(m.append("FromDovecot", "(\\Seen $Label6)", None, b"Subject: in folder\r\n\r\nbody\r\n")[0] == "OK", "append")
`)
	st = compare("folders created by each server")
	for _, box := range []string{"FromPosthorn", "FromDovecot"} {
		if n := len(st[box].Messages); n != 1 {
			t.Errorf("folder %s: %d messages, want 1: %v", box, n, st)
		}
	}
	imapPython(t, dvp, user, pass, `
m.select("INBOX")
check(m.uid("STORE", "`+uids[2]+`", "+FLAGS", "(\\Deleted)")[0] == "OK", "store deleted")
check(m.expunge()[0] == "OK", "expunge")
`)
	st = compare("expunge through dovecot")
	if _, ok := st["INBOX"].Messages[uids[2]]; ok {
		t.Errorf("posthorn still shows UID %s expunged by dovecot", uids[2])
	}

	// \Recent: Dovecot keeps its own in dovecot.index, which posthorn does
	// not read, so each server shares recent messages only among its own
	// sessions. Posthorn's sessions must still follow RFC 3501 §2.3.2
	// among themselves while Dovecot sessions select, append and sync
	// alongside, and both must report the same messages and UIDs.
	out = imapPython(t, php, user, pass, `
import re
def conn(port):
    c = imaplib.IMAP4("127.0.0.1", int(port), timeout=20)
    check(c.login(os.environ["IMAP_USER"], os.environ["IMAP_PASS"])[0] == "OK", "login on %s" % port)
    return c
def status(c):
    typ, data = c.status("INBOX", "(MESSAGES RECENT UIDNEXT)")
    check(typ == "OK", "status")
    return tuple(int(x) for x in re.search(rb"MESSAGES (\d+) RECENT (\d+) UIDNEXT (\d+)", data[0]).groups())
def recent(c):
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    return [int(re.search(rb"UID (\d+)", d).group(1)) for d in data if b"\\Recent" in d]
def uids(c):
    typ, data = c.uid("SEARCH", None, "ALL")
    return [int(x) for x in data[0].split()]
dv = conn(`+dvp+`)
check(dv.select("INBOX")[0] == "OK", "dovecot SELECT")
msgs, rec0, _ = status(m)
a = conn(os.environ["PORT"])
typ, data = a.select("INBOX")
check(int(data[0]) == msgs, "posthorn SELECT A: %d messages" % msgs)
check(a.response("RECENT")[1] == [str(rec0).encode()], "posthorn SELECT A takes the %d STATUS counted, Dovecot's SELECT notwithstanding" % rec0)
check(len(recent(a)) == rec0, "A has \\Recent on those")
check(uids(a) == uids(dv), "posthorn and dovecot list the same UIDs")
b = conn(os.environ["PORT"])
b.select("INBOX")
check(b.response("RECENT")[1] == [b"0"], "posthorn SELECT B: RECENT 0")
check(status(m)[:2] == (msgs, 0), "posthorn STATUS from a third session: RECENT 0")

# A message appended through Dovecot, seen first by Dovecot's session.
typ, data = dv.append("INBOX", None, None, b"Subject: recent interop\r\n\r\nbody\r\n")
check(typ == "OK", "dovecot append")
newuid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
check(dv.noop()[0] == "OK", "dovecot sync")
check(a.noop()[0] == "OK" and b.noop()[0] == "OK", "posthorn sessions sync")
check(uids(a) == uids(b) == uids(dv) and uids(a)[-1] == newuid, "the same UIDs everywhere, %d last" % newuid)
ra, rb = newuid in recent(a), newuid in recent(b)
check(ra != rb, "the new message is recent in exactly one posthorn session (A %s, B %s)" % (ra, rb))
check(status(m) == (msgs + 1, 0, newuid + 1), "posthorn STATUS: %d messages, RECENT 0, UIDNEXT %d" % (msgs + 1, newuid + 1))
d2 = conn(`+dvp+`)
check(status(d2)[0] == msgs + 1, "dovecot STATUS MESSAGES")
for c in (a, b, dv, d2):
    c.logout()
`)
	t.Log(out)
	st = compare("\\Recent sessions on both servers")
	t.Logf("final state, the same in both servers: %v", st)
}
