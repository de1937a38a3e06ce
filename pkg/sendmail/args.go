// Package sendmail is posthorn's sendmail(1): the command cron, mail(1),
// PHP, git send-email and monitoring scripts use to send mail. It accepts
// Postfix's (and Sendmail's) flags, reads the message from standard input
// and hands it to the pickup daemon, or leaves it in maildrop/ while the
// daemons are down (DESIGN §1).
package sendmail

import (
	"errors"
	"fmt"
	"strings"
)

// Mode is what an invocation asks for.
type Mode int

const (
	ModeDeliver    Mode = iota // -bm, the default: send a message
	ModeSMTP                   // -bs: SMTP on standard input and output
	ModeQueueList              // -bp, or invoked as mailq
	ModeNewaliases             // -bi / -I, or invoked as newaliases
	ModeFlush                  // -q: deliver the deferred queue now
	ModeVerify                 // -bv: verify recipients, deliver nothing
	ModeDaemon                 // -bd / -bl: start the mail system
)

// Options are the parsed command line.
type Options struct {
	Mode        Mode
	Config      string   // -C FILE
	Sender      string   // -f / -r; "" when not given
	SenderSet   bool     // -f or -r was given (it may be <> = null sender)
	FullName    string   // -F
	ExtractRcpt bool     // -t
	IgnoreDots  bool     // -i / -oi: a lone "." does not end the input
	Verbose     bool     // -v
	Notify      string   // -N: DSN NOTIFY for every recipient
	Ret         string   // -R: DSN RET (hdrs or full)
	EnvID       string   // -V: DSN ENVID
	Recipients  []string // operands
}

// ErrUsage marks a bad command line (exit EX_USAGE).
var ErrUsage = errors.New("usage error")

// ignored are legacy flags Postfix accepts and ignores, with whether they
// take an argument.
var ignored = map[byte]bool{'A': false, 'h': true, 'L': true, 'm': false, 'n': false, 'U': false, 'X': true, 'B': true, 'G': false}

// Parse reads sendmail's arguments (without the program name). prog is the
// name it was invoked as: mailq and newaliases select their modes.
func Parse(prog string, args []string) (*Options, error) {
	o := &Options{}
	switch prog {
	case "mailq":
		o.Mode = ModeQueueList
	case "newaliases":
		o.Mode = ModeNewaliases
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.Recipients = append(o.Recipients, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.Recipients = append(o.Recipients, a)
			continue
		}
		flag := a[1]
		// value returns the flag's argument: attached (-fuser) or the next word.
		value := func() (string, error) {
			if len(a) > 2 {
				return a[2:], nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%w: option -%c requires an argument", ErrUsage, flag)
			}
			i++
			return args[i], nil
		}
		var err error
		switch flag {
		case 'b':
			switch a {
			case "-bm":
				o.Mode = ModeDeliver
			case "-bs":
				o.Mode = ModeSMTP
			case "-bp":
				o.Mode = ModeQueueList
			case "-bi":
				o.Mode = ModeNewaliases
			case "-bv":
				o.Mode = ModeVerify
			case "-bd", "-bl":
				o.Mode = ModeDaemon
			case "-bh", "-bH":
				// Sendmail's host status: nothing to do, as in Postfix.
			default:
				return nil, fmt.Errorf("%w: unsupported option %s", ErrUsage, a)
			}
		case 'I':
			o.Mode = ModeNewaliases
		case 'q':
			// -q and -q<interval> flush; -qR<site> and -qI<id> too (Postfix
			// maps them to its fast flush, which here is a full flush).
			o.Mode = ModeFlush
		case 't':
			o.ExtractRcpt = true
		case 'i':
			o.IgnoreDots = true
		case 'v':
			o.Verbose = true
		case 'f', 'r':
			o.Sender, err = value()
			o.SenderSet = true
		case 'F':
			o.FullName, err = value()
		case 'C':
			o.Config, err = value()
		case 'N':
			o.Notify, err = value()
		case 'R':
			o.Ret, err = value()
		case 'V':
			o.EnvID, err = value()
		case 'O':
			_, err = value() // -O option=value (smtputf8, requiretls): ignored
		case 'o':
			// -oi is -i; every other -o option is ignored, as in Postfix,
			// including the ones that take their value in the next word
			// (-oA, -oB... Postfix: only the attached form).
			if a == "-oi" {
				o.IgnoreDots = true
			}
		default:
			takesArg, known := ignored[flag]
			if !known {
				return nil, fmt.Errorf("%w: illegal option -%c", ErrUsage, flag)
			}
			if takesArg {
				_, err = value()
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if o.Sender != "" {
		o.Sender = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(o.Sender), "<"), ">")
	}
	for _, s := range []string{o.Sender, o.FullName, o.Notify, o.Ret, o.EnvID} {
		if strings.ContainsAny(s, "\r\n\x00") {
			return nil, fmt.Errorf("%w: line break or NUL in an option value", ErrUsage)
		}
	}
	for _, r := range o.Recipients {
		if strings.ContainsAny(r, "\r\n\x00") || strings.HasPrefix(r, "-") {
			return nil, fmt.Errorf("%w: bad recipient %q", ErrUsage, r)
		}
	}
	return o, nil
}
