package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The IMAP and POP3 cases read a Maildir written straight to disk, as
// user0@example.test, password mailPass, with the same passwd-file line
// ({PLAIN}) for posthorn and Dovecot, so that neither pays for a password
// hash and the figures are the servers' own.
const (
	mailUser = "user0@" + localDomain
	// idleUser has a small INBOX, for the many IDLE sessions.
	idleUser = "user1@" + localDomain
	idleMsgs = 100
	mailPass = "bench-password"
	// searchWord is in the body of one message in rareEvery.
	searchWord = "quetzalcoatl"
	rareEvery  = 1000
)

// mailOwner is the system user both servers read the Maildir as: Dovecot
// refuses to run a mail process as root.
const mailOwner = "mail"

func mailOwnerIDs() (int, int, error) {
	u, err := user.Lookup(mailOwner)
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// writeMaildir creates a Maildir of n small messages in cur/, named as
// Dovecot names them (<secs>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>:2,),
// some of them \Seen, owned by uid:gid.
func writeMaildir(dir string, n, uid, gid int) error {
	// The folders above it: readable by the mail owner.
	if err := os.MkdirAll(filepath.Dir(dir), 0755); err != nil {
		return err
	}
	for d := filepath.Dir(dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0700); err != nil {
			return err
		}
	}
	base := time.Now().Add(-time.Duration(n) * time.Second).Unix()
	pid := os.Getpid()
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.Reset()
		t := time.Unix(base+int64(i), 0).UTC()
		fmt.Fprintf(&b, "Return-Path: <sender%d@bench.example.test>\r\n", i%97)
		fmt.Fprintf(&b, "Message-ID: <%d.%d@bench.example.test>\r\n", i, base)
		fmt.Fprintf(&b, "Date: %s\r\n", t.Format(time.RFC1123Z))
		fmt.Fprintf(&b, "From: Sender %d <sender%d@bench.example.test>\r\n", i%97, i%97)
		b.WriteString("To: user0@" + localDomain + "\r\n")
		fmt.Fprintf(&b, "Subject: bench message %d about item %d\r\n", i, i%389)
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
		for l := 0; l < 6; l++ {
			fmt.Fprintf(&b, "Line %d of message %d: the quick brown fox jumps over the lazy dog.\r\n", l, i)
		}
		if i%rareEvery == rareEvery/2 {
			fmt.Fprintf(&b, "The word %s is in this one.\r\n", searchWord)
		}
		body := b.String()
		vsize := len(body) // already CRLF
		size := len(body)
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d,W=%d:2,%s", base+int64(i), i%1000000, pid, size, vsize, flags)
		p := filepath.Join(dir, "cur", name)
		if err := os.WriteFile(p, []byte(body), 0600); err != nil {
			return err
		}
		os.Lchown(p, uid, gid)
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, uid, gid)
		}
		return nil
	})
}

// passwdLine is the user's line in posthorn's users file and in Dovecot's
// passwd-file.
func passwdLine(uid, gid int) string {
	return fmt.Sprintf("%s:{PLAIN}%s:%d:%d::::\n%s:{PLAIN}%s:%d:%d::::\n", mailUser, mailPass, uid, gid, idleUser, mailPass, uid, gid)
}

const dovecotCmd = "/usr/sbin/dovecot"

func dovecotInstalled() bool {
	_, err := os.Stat(dovecotCmd)
	return err == nil
}

// dovecotHas tells whether Dovecot's program (imap, pop3) is installed.
func dovecotHas(prog string) bool {
	_, err := os.Stat(filepath.Join("/usr/lib/dovecot", prog))
	return err == nil
}

func dovecotVersion() string {
	out, err := exec.Command(dovecotCmd, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// dovecotSystem is a private Dovecot: IMAP and/or POP3 in plaintext on
// loopback ports, one passwd-file user, mail processes as the mail owner.
type dovecotSystem struct {
	dir, log   string
	imap, pop3 string // addresses, empty when not served
	cmd        *exec.Cmd
	waited     chan struct{}
}

// startDovecot serves the Maildirs <mailRoot>/<domain>/<user>/Maildir,
// posthorn's layout for virtual users.
func startDovecot(base, mailRoot string, uid, gid int, imap, pop3 bool, sessions int) (*dovecotSystem, error) {
	dir, err := os.MkdirTemp(base, "dovecot-bench-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0755)
	s := &dovecotSystem{dir: dir, log: filepath.Join(dir, "dovecot.log")}
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(passwdLine(uid, gid)), 0644); err != nil {
		return s, err
	}
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0755)
	os.Chown(home, uid, gid)
	var protos []string
	var listeners string
	if imap {
		port, err := freePort()
		if err != nil {
			return s, err
		}
		s.imap = fmt.Sprintf("127.0.0.1:%d", port)
		protos = append(protos, "imap")
		listeners += fmt.Sprintf(`service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}
`, port)
	}
	if pop3 {
		port, err := freePort()
		if err != nil {
			return s, err
		}
		s.pop3 = fmt.Sprintf("127.0.0.1:%d", port)
		protos = append(protos, "pop3")
		listeners += fmt.Sprintf(`service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, port)
	}
	limit := sessions + 100
	conf := filepath.Join(dir, "dovecot.conf")
	text := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = %[3]s
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:%[4]s/%%d/%%n/Maildir
pop3_uidl_format = %%08Xu%%08Xv
default_process_limit = %[8]d
default_client_limit = %[9]d
mail_max_userip_connections = %[8]d
passdb {
  driver = passwd-file
  args = username_format=%%u %[5]s
}
userdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[1]s/home
}
%[10]s`, dir, s.log, strings.Join(protos, " "), mailRoot, passwd, uid, gid, limit, 2*limit+100, listeners)
	if err := os.WriteFile(conf, []byte(text), 0644); err != nil {
		return s, err
	}
	s.cmd = exec.Command(dovecotCmd, "-F", "-c", conf)
	logf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		return s, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	s.waited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.waited) }()
	for _, a := range []string{s.imap, s.pop3} {
		if a == "" {
			continue
		}
		if err := waitBanner(a, "+OK", "* OK", 20*time.Second); err != nil {
			return s, fmt.Errorf("%v\n%s\n%s", err, tailFile(filepath.Join(dir, "stderr"), 10), s.LogTail(20))
		}
	}
	return s, nil
}

func (s *dovecotSystem) MasterPid() int { return s.cmd.Process.Pid }

func (s *dovecotSystem) LogTail(lines int) string { return tailFile(s.log, lines) }

func (s *dovecotSystem) Stop() error {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.waited:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waited:
		return nil
	case <-time.After(30 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.waited
		return fmt.Errorf("dovecot did not stop within 30 s of SIGTERM; killed")
	}
}

// waitBanner waits until addr greets with one of the prefixes.
func waitBanner(addr, p1, p2 string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, p1) || strings.HasPrefix(line, p2) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no greeting from %s within %v", addr, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// imapConn is a minimal IMAP client: one command at a time, literals
// read and counted, untagged responses counted.
type imapConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	tagN int
}

// imapReply is what a command got back.
type imapReply struct {
	untagged int    // untagged response lines ("* ...")
	bytes    int64  // everything read, literals included
	status   string // the tagged line
	search   []string
}

func dialIMAP(addr string) (*imapConn, error) {
	c, err := net.DialTimeout("tcp", addr, 60*time.Second)
	if err != nil {
		return nil, err
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 65536), w: bufio.NewWriterSize(c, 4096)}
	c.SetReadDeadline(time.Now().Add(120 * time.Second))
	line, err := ic.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %v", err)
	}
	if !strings.HasPrefix(line, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	return ic, nil
}

// line reads one response line, with its literals inlined as counts.
func (ic *imapConn) line() (string, int64, error) {
	var b strings.Builder
	var n int64
	for {
		l, err := ic.r.ReadString('\n')
		n += int64(len(l))
		if err != nil {
			return b.String() + l, n, err
		}
		b.WriteString(l)
		// A literal: "{123}\r\n" at the end of the line.
		t := strings.TrimRight(l, "\r\n")
		if !strings.HasSuffix(t, "}") {
			return b.String(), n, nil
		}
		i := strings.LastIndexByte(t, '{')
		size, err := strconv.ParseInt(strings.TrimSuffix(t[i+1:len(t)-1], "+"), 10, 64)
		if i < 0 || err != nil {
			return b.String(), n, nil
		}
		m, err := io.CopyN(io.Discard, ic.r, size)
		n += m
		if err != nil {
			return b.String(), n, err
		}
	}
}

// cmd sends a command and reads to its tagged response; anything but OK
// is an error.
func (ic *imapConn) cmd(timeout time.Duration, format string, args ...any) (imapReply, error) {
	ic.tagN++
	tag := fmt.Sprintf("a%d", ic.tagN)
	fmt.Fprintf(ic.w, tag+" "+format+"\r\n", args...)
	if err := ic.w.Flush(); err != nil {
		return imapReply{}, err
	}
	ic.c.SetReadDeadline(time.Now().Add(timeout))
	var r imapReply
	for {
		l, n, err := ic.line()
		r.bytes += n
		if err != nil {
			return r, err
		}
		if strings.HasPrefix(l, "* ") {
			r.untagged++
			if strings.HasPrefix(l, "* SEARCH") {
				r.search = strings.Fields(l)[2:]
			}
			continue
		}
		if strings.HasPrefix(l, tag+" ") {
			r.status = strings.TrimSpace(l)
			if !strings.HasPrefix(l, tag+" OK") {
				return r, fmt.Errorf("%s", r.status)
			}
			return r, nil
		}
	}
}

// login logs in with LOGIN (plaintext, loopback).
func (ic *imapConn) login(user string) error {
	_, err := ic.cmd(60*time.Second, "LOGIN %s %s", user, mailPass)
	return err
}

func (ic *imapConn) Close() { ic.c.Close() }

// pop3Conn is a minimal POP3 client.
type pop3Conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialPOP3(addr string) (*pop3Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	pc := &pop3Conn{c: c, r: bufio.NewReaderSize(c, 65536), w: bufio.NewWriterSize(c, 4096)}
	if _, err := pc.status(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %v", err)
	}
	return pc, nil
}

func (pc *pop3Conn) status() (string, error) {
	pc.c.SetReadDeadline(time.Now().Add(120 * time.Second))
	l, err := pc.r.ReadString('\n')
	if err != nil {
		return l, err
	}
	if !strings.HasPrefix(l, "+OK") {
		return l, fmt.Errorf("%s", strings.TrimSpace(l))
	}
	return l, nil
}

// multi reads a multi-line response to its "." line and returns the
// lines (dot-unstuffed only for counting) and the bytes read.
func (pc *pop3Conn) multi(keep bool) ([]string, int64, error) {
	var lines []string
	var n int64
	for {
		l, err := pc.r.ReadString('\n')
		n += int64(len(l))
		if err != nil {
			return lines, n, err
		}
		if l == ".\r\n" || l == ".\n" {
			return lines, n, nil
		}
		if keep {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
	}
}

func (pc *pop3Conn) cmd(format string, args ...any) (string, error) {
	fmt.Fprintf(pc.w, format+"\r\n", args...)
	if err := pc.w.Flush(); err != nil {
		return "", err
	}
	return pc.status()
}
