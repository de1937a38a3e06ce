package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
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
