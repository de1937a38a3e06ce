package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// load describes the messages to send.
type load struct {
	addr    string // host:port of the server
	n, c    int    // messages, concurrent sessions
	size    int    // payload bytes per message, headers not included (smtp-source -l)
	users   int    // recipients user0..user<users-1>@example.test, round robin
	reuse   bool   // send a session's messages over one connection (smtp-source -d)
	heloArg string
	// domain is the recipients' domain: localDomain (the virtual users)
	// or remoteDomain (relayed to the sink).
	domain string
	// sender is the envelope sender; with authUser set, each connection
	// first logs in with AUTH PLAIN as authUser, authPass.
	sender             string
	authUser, authPass string
}

// The recipients' domains: the virtual users of the local case, and a
// domain neither system handles itself, relayed to smtp-sink.
const (
	localDomain  = "example.test"
	remoteDomain = "remote.example.test"
)

// rcpt is the address of virtual user i.
func rcpt(i int) string { return fmt.Sprintf("user%d@%s", i, localDomain) }

// to is the address of the load's recipient i, user<i>@<domain>.
func (l load) to(i int) string { return fmt.Sprintf("user%d@%s", i, l.domain) }

// The envelope senders: any address in the local case; in the relay case
// the submitting user's own (posthorn lets a user send as itself only).
const (
	sender      = "bench@bench.example.test"
	relaySender = "bench@" + localDomain
	relayPass   = "bench-password"
)

// loadResult is what the client saw.
type loadResult struct {
	start    time.Time       // just before the first connection
	done     time.Time       // the last reply
	accepted int             // messages answered 250 after DATA
	failures []string        // the first few errors
	failed   int             // messages not accepted
	dataLat  []time.Duration // end of data ("." sent) to the 250 reply
	txnLat   []time.Duration // connect (MAIL with -reuse) to the 250 reply
	authLat  []time.Duration // first AUTH command to the 235 reply
	// authRetries counts AUTH commands answered 454 (temporary failure)
	// and sent again.
	authRetries int
}

func (r *loadResult) fail(err error) {
	r.failed++
	if len(r.failures) < 5 {
		r.failures = append(r.failures, err.Error())
	}
}

// payload is the message body: size bytes of 78-character lines.
func payload(size int) []byte {
	var b bytes.Buffer
	line := 0
	for b.Len() < size {
		left := size - b.Len()
		if left <= 2 {
			b.WriteString("\r\n")
			break
		}
		n := 76
		if left-2 < n {
			n = left - 2
		}
		for k := 0; k < n; k++ {
			b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[(line+k)%36])
		}
		b.WriteString("\r\n")
		line++
	}
	return b.Bytes()
}

// smtpConn is a minimal SMTP client: no pipelining, one command at a time,
// as smtp-source does.
type smtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dial(addr string) (*smtpConn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &smtpConn{c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 16384)}, nil
}

// replyError is a reply with another code than expected.
type replyError struct {
	want, code int
	line       string
}

func (e *replyError) Error() string { return fmt.Sprintf("expected %d, got %q", e.want, e.line) }

// A login refused with 454 (temporary) is tried again on the same
// connection, authTries times in all, after authRetryDelay doubled on
// each try up to authRetryMax: about 10 s. Each refusal counts as an
// error, and the server hangs up after 20 (smtpd_hard_error_limit).
const (
	authTries      = 15
	authRetryDelay = 50 * time.Millisecond
	authRetryMax   = 800 * time.Millisecond
)

// reply reads a (multi-line) reply and checks its code.
func (s *smtpConn) reply(want int) error {
	s.c.SetReadDeadline(time.Now().Add(120 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("bad reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return fmt.Errorf("bad reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		if code != want {
			return &replyError{want: want, code: code, line: strings.TrimSpace(line)}
		}
		return nil
	}
}

func (s *smtpConn) cmd(want int, format string, args ...any) error {
	fmt.Fprintf(s.w, format+"\r\n", args...)
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.reply(want)
}

// runGo drives the load with the built-in client, recording for every
// message the time from the end of its data to the 250 reply.
func runGo(l load) loadResult {
	body := payload(l.size)
	res := loadResult{dataLat: make([]time.Duration, 0, l.n), txnLat: make([]time.Duration, 0, l.n)}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	runID := time.Now().UnixNano()
	res.start = time.Now()
	for w := 0; w < l.c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s *smtpConn
			var dataLat, txnLat, authLat []time.Duration
			authRetries := 0
			var errs []error
			closeConn := func(quit bool) {
				if s == nil {
					return
				}
				if quit {
					s.cmd(221, "QUIT")
				}
				s.c.Close()
				s = nil
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= l.n {
					break
				}
				t0 := time.Now()
				err := func() error {
					if s == nil {
						var err error
						if s, err = dial(l.addr); err != nil {
							return err
						}
						if err := s.reply(220); err != nil {
							return fmt.Errorf("greeting: %w", err)
						}
						if err := s.cmd(250, "EHLO %s", l.heloArg); err != nil {
							return fmt.Errorf("EHLO: %w", err)
						}
						if l.authUser != "" {
							// RFC 4616: authzid NUL authcid NUL password.
							resp := base64.StdEncoding.EncodeToString([]byte("\x00" + l.authUser + "\x00" + l.authPass))
							a0 := time.Now()
							for try := 1; ; try++ {
								err := s.cmd(235, "AUTH PLAIN %s", resp)
								if err == nil {
									break
								}
								// 454 is temporary (RFC 4954 §6): try
								// again on the same connection, a while.
								var rerr *replyError
								if !errors.As(err, &rerr) || rerr.code != 454 || try >= authTries {
									return fmt.Errorf("AUTH: %w", err)
								}
								authRetries++
								time.Sleep(min(authRetryDelay<<(try-1), authRetryMax))
							}
							authLat = append(authLat, time.Since(a0))
						}
					}
					if err := s.cmd(250, "MAIL FROM:<%s>", l.sender); err != nil {
						return fmt.Errorf("MAIL: %w", err)
					}
					to := l.to(i % l.users)
					if err := s.cmd(250, "RCPT TO:<%s>", to); err != nil {
						return fmt.Errorf("RCPT: %w", err)
					}
					if err := s.cmd(354, "DATA"); err != nil {
						return fmt.Errorf("DATA: %w", err)
					}
					fmt.Fprintf(s.w, "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nMessage-ID: <%d.%d@bench.example.test>\r\nSubject: bench message %d\r\n\r\n",
						l.sender, to, time.Now().Format(time.RFC1123Z), runID, i, i)
					s.w.Write(body)
					s.w.WriteString(".\r\n")
					if err := s.w.Flush(); err != nil {
						return err
					}
					t1 := time.Now()
					if err := s.reply(250); err != nil {
						return fmt.Errorf("end of data: %w", err)
					}
					t2 := time.Now()
					dataLat = append(dataLat, t2.Sub(t1))
					txnLat = append(txnLat, t2.Sub(t0))
					return nil
				}()
				if err != nil {
					errs = append(errs, err)
					closeConn(false)
					continue
				}
				if !l.reuse {
					closeConn(true)
				}
			}
			closeConn(true)
			mu.Lock()
			defer mu.Unlock()
			res.dataLat = append(res.dataLat, dataLat...)
			res.txnLat = append(res.txnLat, txnLat...)
			res.authLat = append(res.authLat, authLat...)
			res.authRetries += authRetries
			res.accepted += len(dataLat)
			for _, e := range errs {
				res.fail(e)
			}
		}()
	}
	wg.Wait()
	res.done = time.Now()
	return res
}

// smtpSource is Debian's path of Postfix's test client.
const smtpSource = "/usr/sbin/smtp-source"

// runSmtpSource drives the load with Postfix's smtp-source: one process per
// recipient (it sends to one address), sessions and messages split evenly
// among them. It reports no per-message times, and cannot log in with AUTH.
func runSmtpSource(l load) loadResult {
	var res loadResult
	type proc struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	var procs []*proc
	res.start = time.Now()
	for k := 0; k < l.users; k++ {
		msgs := l.n / l.users
		if k < l.n%l.users {
			msgs++
		}
		sess := l.c / l.users
		if k < l.c%l.users {
			sess++
		}
		if msgs == 0 || sess == 0 {
			continue
		}
		args := []string{"-s", strconv.Itoa(sess), "-m", strconv.Itoa(msgs), "-l", strconv.Itoa(l.size),
			"-f", l.sender, "-t", l.to(k), "-M", l.heloArg}
		if l.reuse {
			args = append(args, "-d")
		}
		p := &proc{cmd: exec.Command(smtpSource, append(args, l.addr)...)}
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			res.fail(err)
			continue
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			res.fail(fmt.Errorf("smtp-source %s: %v: %s", strings.Join(p.cmd.Args[1:], " "), err, strings.TrimSpace(p.out.String())))
		}
	}
	res.done = time.Now()
	return res
}
