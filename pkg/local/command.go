package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/mbox"
)

// defaultCommandTimeLimit is Postfix's command_time_limit, for a request
// that names none.
const defaultCommandTimeLimit = 1000 * time.Second

// maxCommandOutput is how much of a command's standard output and error
// is kept for the bounce or deferral reason; the rest is read and dropped
// so the command never blocks on a full pipe.
const maxCommandOutput = 4096

// maxReasonOutput bounds the part of that output quoted in a reason: its
// first line, cut at this length.
const maxReasonOutput = 512

// runCommand runs req.Command with /bin/sh -c, as local(8) runs "|command"
// destinations: the message on standard input (a From_ line, the header
// lines local adds, the message unquoted), standard output and error
// captured, in a process group of its own that is killed when the time
// limit passes. Only the alias or .forward text is the command: envelope
// data reaches it in the environment, never in the command line (HOSTILE
// 27).
func runCommand(req workRequest, body io.Reader) workReply {
	var rep workReply
	inR, inW, err := os.Pipe()
	if err != nil {
		rep.Err = err.Error()
		return rep
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		rep.Err = err.Error()
		return rep
	}
	cmd := exec.Command("/bin/sh", "-c", req.Command)
	cmd.Env = req.Env
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		rep.Err = fmt.Sprintf("cannot run /bin/sh: %v", err)
		return rep
	}
	if req.TimeLimit <= 0 {
		req.TimeLimit = defaultCommandTimeLimit
	}
	deadline := time.Now().Add(req.TimeLimit)
	var timedOut atomic.Bool
	kill := func() {
		timedOut.Store(true)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	timer := time.AfterFunc(req.TimeLimit, kill)
	defer timer.Stop()

	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		// A command may stop reading early (EPIPE); that is no error, as
		// in Postfix's pipe_command.
		mbox.WritePipeMessage(inW, req.Sender, time.Now(), req.Prefix, body)
		inW.Close()
	}()
	outDone := make(chan []byte, 1)
	go func() {
		var kept []byte
		buf := make([]byte, 8192)
		for {
			n, err := outR.Read(buf)
			if room := maxCommandOutput - len(kept); room > 0 {
				kept = append(kept, buf[:min(n, room)]...)
			}
			if err != nil {
				break
			}
		}
		outDone <- kept
	}()

	waitErr := cmd.Wait()
	// Children the command left running may still hold its output or
	// input open; they get until the time limit, like the command.
	var out []byte
	select {
	case out = <-outDone:
	default:
		select {
		case out = <-outDone:
		case <-time.After(time.Until(deadline)):
			kill()
			outR.Close()
			out = <-outDone
		}
	}
	outR.Close()
	select {
	case <-inDone:
	default:
		select {
		case <-inDone:
		case <-time.After(time.Until(deadline)):
			kill()
			inW.Close()
			<-inDone
		}
	}
	rep.Output = string(out)
	var ee *exec.ExitError
	switch {
	case timedOut.Load():
		rep.TimedOut = true
	case waitErr == nil:
	case errors.As(waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rep.Signal = int(ws.Signal())
		} else {
			rep.Exit = ee.ExitCode()
		}
	default:
		rep.Err = waitErr.Error()
	}
	return rep
}

// sysexits is Postfix's table for sendmail-compatible exit codes
// (sys_exits.c, sysexits(3)): the status code, and the text of the reason.
// A code beginning with 4 defers, any other bounces.
var sysexits = map[int]struct{ dsn, text string }{
	64: {"5.3.0", "command line usage error"},
	65: {"5.6.0", "data format error"},
	66: {"5.3.0", "cannot open input"},
	67: {"5.1.1", "user unknown"},
	68: {"5.1.2", "host name unknown"},
	69: {"5.3.0", "service unavailable"},
	70: {"5.3.0", "internal software error"},
	71: {"4.3.0", "system resource problem"},
	72: {"5.3.0", "critical OS file missing"},
	73: {"5.2.0", "can't create user output file"},
	74: {"5.3.0", "input/output error"},
	75: {"4.3.0", "temporary failure"},
	76: {"5.5.0", "remote error in protocol"},
	77: {"5.7.0", "permission denied"},
	78: {"5.3.5", "local configuration error"},
}

// enhancedCode matches an RFC 3463 status code at the start of a command's
// output; local(8): it "takes precedence over the non-zero exit status".
var enhancedCode = regexp.MustCompile(`^([45])\.[0-9]{1,3}\.[0-9]{1,3}\b`)

// commandResult turns what a command did into the recipient's result, as
// Postfix's local does, with one difference: a command that runs past the
// time limit is deferred (Postfix returns it to the sender), since a hung
// command usually waits for something that comes back.
func commandResult(command string, rep workReply) agent.Reply {
	out := firstLine(rep.Output)
	withOutput := func(s string) string {
		if out != "" {
			return s + ". Command output: " + out
		}
		return s
	}
	switch {
	case rep.Err != "":
		return agent.Tempfail("4.3.0", "cannot run command %q: %s", command, rep.Err)
	case rep.TimedOut:
		return agent.Tempfail("4.3.0", "%s", withOutput(fmt.Sprintf("Command time limit exceeded: %q", command)))
	case rep.Signal != 0:
		return agent.Tempfail("4.3.0", "%s", withOutput(fmt.Sprintf("Command died with signal %d: %q", rep.Signal, command)))
	case rep.Exit == 0:
		return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to command: " + command}
	}
	if m := enhancedCode.FindStringSubmatch(out); m != nil {
		text := strings.TrimSpace(out[len(m[0]):])
		if text == "" {
			text = fmt.Sprintf("Command died with status %d: %q", rep.Exit, command)
		}
		if m[1] == "4" {
			return agent.Tempfail(m[0], "%s", text)
		}
		return agent.Permfail(m[0], "%s", text)
	}
	if se, ok := sysexits[rep.Exit]; ok {
		if se.dsn[0] == '4' {
			return agent.Tempfail(se.dsn, "%s", withOutput(se.text))
		}
		return agent.Permfail(se.dsn, "%s", withOutput(se.text))
	}
	return agent.Permfail("5.3.0", "%s", withOutput(fmt.Sprintf("Command died with status %d: %q", rep.Exit, command)))
}

// firstLine is the first non-empty line of a command's output, printable
// ASCII only (others become "_", as Postfix's printable()), at most
// maxReasonOutput bytes.
func firstLine(s string) string {
	s = strings.TrimLeft(s, " \t\r\n")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxReasonOutput {
		s = s[:maxReasonOutput]
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, strings.TrimSpace(s))
}

// envFilter is Postfix's default command_expansion_filter: the characters
// kept in envelope values put into a command's environment; any other
// becomes "_", so no value can carry shell syntax to a script that uses it
// carelessly.
const envFilter = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func filterEnv(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && strings.ContainsRune(envFilter, r) {
			return r
		}
		return '_'
	}, s)
}
