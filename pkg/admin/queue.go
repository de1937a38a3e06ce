package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/qmgr"
	"github.com/posthorn/posthorn/pkg/spool"
)

const queueUsage = `usage: posthorn queue list
       posthorn queue show ID
       posthorn queue flush
       posthorn queue delete|hold|release|requeue ID... | ALL | -
`

// queueCmd is Postfix's postqueue and postsuper under one name:
// list (mailq), show (postcat -q), flush (postqueue -f), delete (-d),
// hold (-h), release (-H), requeue (-r). ID "-" reads IDs from standard
// input, "ALL" means every message in the queues the operation applies to.
func queueCmd(cfg *config.Config, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, queueUsage)
		return exitUsage
	}
	sp := spool.Open(cfg.SpoolDir)
	switch op, ids := args[0], args[1:]; {
	case op == "list" && len(ids) == 0:
		return listQueue(cfg, env)
	case op == "show" && len(ids) == 1:
		return showMessage(sp, ids[0], env)
	case op == "flush" && len(ids) == 0:
		if err := notifyQmgr(cfg, qmgr.Notice{Op: "flush"}); err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: flush: %v\n", err)
			return exitFail
		}
		return exitOK
	case op == "delete" || op == "hold" || op == "release" || op == "requeue":
		if len(ids) == 0 {
			fmt.Fprint(env.Stderr, queueUsage)
			return exitUsage
		}
		return queueOp(cfg, sp, op, ids, env)
	}
	fmt.Fprint(env.Stderr, queueUsage)
	return exitUsage
}

// sources are the queues each operation takes messages from (postsuper(1)).
var sources = map[string][]string{
	"delete":  {spool.Hold, spool.Incoming, spool.Active, spool.Deferred},
	"hold":    {spool.Incoming, spool.Active, spool.Deferred},
	"release": {spool.Hold},
	"requeue": {spool.Incoming, spool.Active, spool.Deferred, spool.Hold},
}

func queueOp(cfg *config.Config, sp *spool.Spool, op string, ids []string, env Env) int {
	log := maillog.New(cfg.Log.SyslogName, "postsuper", cfg.Log.Target)
	targets, err := expandIDs(sp, sources[op], ids, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitUsage
	}
	n, status := 0, exitOK
	for _, id := range targets {
		q, ok := locate(sp, id, sources[op])
		if !ok {
			if len(ids) != 1 || ids[0] != "ALL" {
				fmt.Fprintf(env.Stderr, "posthorn: %s: no such message in %s\n", id, strings.Join(sources[op], ", "))
				status = exitFail
			}
			continue
		}
		var err error
		switch op {
		case "delete":
			err = sp.Remove(q, id)
			if err == nil {
				log.Info("%s: removed", id)
			}
		case "hold":
			err = sp.Move(id, q, spool.Hold)
			if err == nil {
				log.Info("%s: placed on hold", id)
			}
		case "release":
			// Released mail is due at once (postsuper -H puts it in deferred).
			err = sp.Move(id, q, spool.Deferred)
			if err == nil {
				sp.SetNextAttempt(spool.Deferred, id, time.Now())
				log.Info("%s: released from hold", id)
			}
		case "requeue":
			err = sp.Move(id, q, spool.Incoming)
			if err == nil {
				log.Info("%s: requeued", id)
			}
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			status = exitFail
			continue
		}
		n++
	}
	verb := map[string]string{"delete": "Deleted", "hold": "Placed on hold", "release": "Released from hold", "requeue": "Requeued"}[op]
	s := "s"
	if n == 1 {
		s = ""
	}
	fmt.Fprintf(env.Stderr, "posthorn: %s: %d message%s\n", verb, n, s)
	if n > 0 && (op == "release" || op == "requeue") {
		// Best effort: a running qmgr picks the messages up now, a stopped
		// one at its start-up scan.
		notifyQmgr(cfg, qmgr.Notice{Op: "flush"})
	}
	return status
}

// expandIDs resolves ALL and "-" (IDs on standard input) and validates IDs
// before any of them becomes a path.
func expandIDs(sp *spool.Spool, queues, ids []string, env Env) ([]string, error) {
	var out []string
	for _, id := range ids {
		switch id {
		case "ALL":
			for _, q := range queues {
				ents, err := sp.List(q)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, err
				}
				for _, e := range ents {
					// A file still being received is nobody's to touch.
					if e.Complete {
						out = append(out, e.ID)
					}
				}
			}
		case "-":
			sc := bufio.NewScanner(io.LimitReader(env.Stdin, 16<<20))
			for sc.Scan() {
				for _, f := range strings.Fields(sc.Text()) {
					out = append(out, strings.TrimRight(f, "*!#"))
				}
			}
		default:
			out = append(out, strings.TrimRight(id, "*!#"))
		}
	}
	for _, id := range out {
		if !spool.ValidID(id) {
			return nil, fmt.Errorf("%q is not a queue ID", id)
		}
	}
	return out, nil
}

func locate(sp *spool.Spool, id string, queues []string) (string, bool) {
	for _, q := range queues {
		if _, err := os.Lstat(sp.Path(q, id)); err == nil {
			return q, true
		}
	}
	return "", false
}

// showMessage prints a queued message as postcat -q does: the envelope,
// the per-recipient state, then the content.
func showMessage(sp *spool.Spool, id string, env Env) int {
	id = strings.TrimRight(id, "*!#")
	if !spool.ValidID(id) {
		fmt.Fprintf(env.Stderr, "posthorn: %q is not a queue ID\n", id)
		return exitUsage
	}
	q, ok := locate(sp, id, []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt})
	if !ok {
		fmt.Fprintf(env.Stderr, "posthorn: %s: no such message\n", id)
		return exitFail
	}
	path := sp.Path(q, id)
	e, size, err := spool.ReadEnvelope(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitFail
	}
	w := env.Stdout
	fmt.Fprintf(w, "*** ENVELOPE RECORDS %s/%s ***\n", q, id)
	fmt.Fprintf(w, "message_size: %d\n", size)
	fmt.Fprintf(w, "message_arrival_time: %s\n", e.Arrival.Format(time.ANSIC))
	fmt.Fprintf(w, "sender: %s\n", e.Sender)
	for _, k := range sortedAttrs(e.Attrs) {
		fmt.Fprintf(w, "%s: %s\n", k, e.Attrs[k])
	}
	for _, r := range e.Rcpts {
		fmt.Fprintf(w, "recipient: %s (%s", r.Addr, r.Status)
		if r.Reason != "" {
			fmt.Fprintf(w, ": %s %s", r.DSN, r.Reason)
		}
		fmt.Fprintln(w, ")")
	}
	fmt.Fprintln(w, "*** MESSAGE CONTENTS ***")
	qf, err := sp.ReadFile(q, id)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitFail
	}
	defer qf.Close()
	io.Copy(w, qf.Content())
	fmt.Fprintln(w, "*** END OF MESSAGE ***")
	return exitOK
}

func sortedAttrs(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// notifyQmgr sends a notice to a running qmgr.
func notifyQmgr(cfg *config.Config, n qmgr.Notice) error {
	return qmgr.NewNotifier(filepath.Join(cfg.SpoolDir, spool.Private, "qmgr")).Notify(n)
}
