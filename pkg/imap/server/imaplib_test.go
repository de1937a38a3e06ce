package server

import (
	"bufio"
	"crypto/tls"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A real client: Python's imaplib, over STARTTLS and implicit TLS, doing
// what mail clients do. IDLE is driven over imaplib's socket (Python 3.11
// has no idle()), and the Go side delivers while the client waits.
const imaplibScript = `
import imaplib, ssl, sys, time, email.utils

host, port, tlsport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
imaplib.Commands['MOVE'] = ('SELECTED',)
imaplib.Commands['ENABLE'] = ('AUTH',)

def ok(r, what):
    typ, data = r
    assert typ == 'OK', (what, typ, data)
    return data

M = imaplib.IMAP4(host, port)
assert 'STARTTLS' in M.capabilities, M.capabilities
ok(M.starttls(ssl_context=ctx), 'starttls')
ok(M.login('alice', 'secret'), 'login')
caps = ok(M.capability(), 'capability')[0]
assert b'IDLE' in caps and b'UIDPLUS' in caps and b'AUTH=PLAIN' not in caps, caps

ok(M.create('Archive'), 'create')
ok(M.create('Entw\u00fcrfe'.encode('utf-7').decode().replace('+', '&')), 'create mutf7')
data = ok(M.list(), 'list')
names = b' '.join(data)
assert b'Archive' in names and b'INBOX' in names, data

msg = b'From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: K\xc3\xa4se\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDer K\xc3\xa4se ist fertig.\r\n'
ok(M.append('INBOX', r'(\Flagged)', imaplib.Time2Internaldate(time.time()), msg), 'append')
ok(M.append('INBOX', None, None, b'Subject: second\r\n\r\nplain body\r\n'), 'append2')

data = ok(M.select('INBOX'), 'select')
assert data == [b'2'], data
data = ok(M.search(None, 'ALL'), 'search')
assert data == [b'1 2'], data
data = ok(M.search(None, 'FLAGGED'), 'search flagged')
assert data == [b'1'], data
M.literal = 'K\u00e4se'.encode()
data = ok(M.search('UTF-8', 'BODY'), 'search utf-8 literal')
assert data == [b'1'], data
data = ok(M.search(None, '(HEADER Subject "second")'), 'search header')
assert data == [b'2'], data

typ, data = M.fetch('1', '(RFC822)')
assert typ == 'OK' and data[0][1] == msg, data
typ, data = M.fetch('1:2', '(FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)')
assert typ == 'OK', data
flat = b''.join(x if isinstance(x, bytes) else b''.join(x) for x in data)
assert b'\\Seen' in flat and b'"bob" "example.org"' in flat and b'{5}' in flat, data
typ, data = M.fetch('2', '(BODY.PEEK[TEXT])')
assert data[0][1] == b'plain body\r\n', data

ok(M.store('2', '+FLAGS', r'(\Deleted)'), 'store')
data = ok(M.uid('SEARCH', None, 'DELETED'), 'uid search')
assert data == [b'2'], data
ok(M.copy('1', 'Archive'), 'copy')
ok(M.uid('COPY', '1', 'Archive'), 'uid copy')
code, data = M.response('COPYUID')
assert code == 'COPYUID' and data[-1].endswith(b' 1 2'), (code, data)
typ, data = M.uid('FETCH', '1:*', '(UID FLAGS)')
assert typ == 'OK' and len(data) == 2, data
ok(M.expunge(), 'expunge')
data = ok(M.search(None, 'ALL'), 'search after expunge')
assert data == [b'1'], data
typ, data = M._simple_command('MOVE', '1', 'Archive')
assert typ == 'OK', (typ, data)
typ, data = M.status('Archive', '(MESSAGES UIDNEXT)')
assert typ == 'OK' and b'MESSAGES 3' in data[0], data

# IDLE: wait for the delivery the Go side makes when it reads IDLING.
tag = M._new_tag().decode()
M.send((tag + ' IDLE\r\n').encode())
line = M.readline()
assert line.startswith(b'+'), line
print('IDLING', flush=True)
line = M.readline()
assert line.strip() == b'* 1 EXISTS', line
M.send(b'DONE\r\n')
while True:
    line = M.readline()
    if line.startswith(tag.encode()):
        assert b' OK ' in line, line
        break
ok(M.close(), 'close')
M.logout()

# Implicit TLS (port 993).
S = imaplib.IMAP4_SSL(host, tlsport, ssl_context=ctx)
ok(S.login('alice', 'secret'), 'login 993')
data = ok(S.select('Archive', readonly=True), 'examine')
assert data == [b'3'], data
S.logout()
print('DONE', flush=True)
`

func TestImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	tlsCfg := testTLSConfig(t)
	ts := newTestServer(t, func(c *Config) { c.TLSConfig = tlsCfg })
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.Serve(l)
	host, port, _ := net.SplitHostPort(ts.addr)
	_, tlsPort, _ := net.SplitHostPort(l.Addr().String())

	cmd := exec.Command(py, "-c", imaplibScript, host, port, tlsPort)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "IDLING" {
				time.Sleep(100 * time.Millisecond)
				ts.user.Deliver("INBOX", []byte(simpleMsg))
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("imaplib: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("imaplib timed out\n%s", stderr.String())
	}
}
