// Package maillog writes one line per event in Postfix's shape, so admins'
// tools (grep for a queue ID, pflogsumm, fail2ban) keep working:
//
//	posthorn/smtpd[1234]: 0193A5F2C41D2: client=host[192.0.2.1]
//
// To standard error (journald, make run) the line is written as is; to
// syslog it goes with facility mail and the tag posthorn/smtpd.
package maillog

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Logger writes log lines for one program.
type Logger struct {
	mu     sync.Mutex
	w      io.Writer
	sys    *syslog.Writer
	prefix string // "posthorn/smtpd[PID]: " for stderr
}

var std = New("posthorn", filepath.Base(os.Args[0]), "stderr")

// Default returns the process-wide logger that Setup configured.
func Default() *Logger { return std }

// Setup configures the process-wide logger: name is syslog_name (posthorn),
// program the daemon (smtpd), target "stderr" or "syslog".
func Setup(name, program, target string) *Logger {
	std = New(name, program, target)
	return std
}

// New returns a logger; a syslog target that cannot be reached falls back to
// standard error rather than losing lines.
func New(name, program, target string) *Logger {
	tag := name + "/" + program
	l := &Logger{w: os.Stderr, prefix: fmt.Sprintf("%s[%d]: ", tag, os.Getpid())}
	if target == "syslog" {
		if s, err := syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, tag); err == nil {
			l.sys = s
		}
	}
	return l
}

// SetOutput redirects a stderr logger (tests).
func (l *Logger) SetOutput(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

var lineBreaks = strings.NewReplacer("\r", "?", "\n", "?")

// lineBufs keep the buffers a line is built in: the mail daemons log a few
// lines per message.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func (l *Logger) emit(level, format string, args ...any) {
	if l.sys != nil {
		l.emitSyslog(level, format, args...)
		return
	}
	bp := lineBufs.Get().(*[]byte)
	b := append((*bp)[:0], l.prefix...)
	if level != "" {
		b = append(append(b, level...), ": "...)
	}
	start := len(b)
	b = fmt.Appendf(b, format, args...)
	// One event, one line: a newline inside a value must not forge a second entry.
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = '?'
		}
	}
	b = append(b, '\n')
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
}

func (l *Logger) emitSyslog(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.ContainsAny(msg, "\r\n") {
		msg = lineBreaks.Replace(msg)
	}
	if level != "" {
		msg = level + ": " + msg
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch level {
	case "warning":
		l.sys.Warning(msg)
	case "fatal", "panic":
		l.sys.Crit(msg)
	default:
		l.sys.Info(msg)
	}
}

// Info logs an ordinary event.
func (l *Logger) Info(format string, args ...any) { l.emit("", format, args...) }

// Warning logs something the admin should look at.
func (l *Logger) Warning(format string, args ...any) { l.emit("warning", format, args...) }

// Fatal logs and exits with status 1, as Postfix's msg_fatal.
func (l *Logger) Fatal(format string, args ...any) {
	l.emit("fatal", format, args...)
	os.Exit(1)
}

// Info, Warning and Fatal on the process-wide logger.
func Info(format string, args ...any)    { std.Info(format, args...) }
func Warning(format string, args ...any) { std.Warning(format, args...) }
func Fatal(format string, args ...any)   { std.Fatal(format, args...) }

// Delay formats a duration for delay= and delays= as Postfix does: two
// significant digits below ten seconds, whole seconds above.
func Delay(d time.Duration) string {
	s := d.Seconds()
	switch {
	case s < 0.01:
		return "0"
	case s < 10:
		v := strconv.FormatFloat(s, 'g', 2, 64)
		if strings.Contains(v, "e") {
			return strconv.FormatFloat(s, 'f', 2, 64)
		}
		return v
	default:
		return strconv.FormatFloat(s, 'f', 0, 64)
	}
}
