package qmgr

import (
	"io"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/spool"
)

// queueDSN queues a message with DSN parameters as smtpd stores them.
func (h *harness) queueDSN(sender string, attrs map[string]string, rcpts ...spool.Recipient) string {
	h.t.Helper()
	w, err := h.sp.Create(&spool.Envelope{Sender: sender, Attrs: attrs, Rcpts: rcpts})
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(w, "Subject: test\n\nbody\n")
	if err := w.Commit(); err != nil {
		h.t.Fatal(err)
	}
	h.note.Notify(Notice{Op: "new", ID: w.ID()})
	return w.ID()
}

// notices returns what the agent was given for rcpt: the notifications.
func (h *harness) notices(rcpt string) []string {
	h.agent.mu.Lock()
	defer h.agent.mu.Unlock()
	var out []string
	for _, g := range h.agent.got {
		if strings.HasPrefix(g, rcpt+" ") {
			out = append(out, g)
		}
	}
	return out
}

// RFC 3461 §4.1: NOTIFY decides which recipients a notification names;
// ENVID and RET come back in it.
func TestNotify(t *testing.T) {
	h := start(t, nil)
	h.agent.results["never@y"] = agent.Permfail("5.1.1", "unknown user")
	h.agent.results["gone@y"] = agent.Permfail("5.1.1", "unknown user")
	h.agent.results["success-only@y"] = agent.Permfail("5.1.1", "unknown user")

	// Only NOTIFY=NEVER failures: no bounce at all.
	id := h.queueDSN("sender@x", nil, spool.Recipient{Addr: "never@y", Params: map[string]string{"NOTIFY": "NEVER"}})
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	// A notice is queued before the original is removed.
	if strings.Contains(h.log.String(), id+": sender") {
		t.Fatalf("notification for NOTIFY=NEVER:\n%s", h.log.String())
	}

	// Mixed: the report names only the recipients that want it, and a
	// success notice goes out separately.
	id = h.queueDSN("sender@x", map[string]string{"envid": "QQ314159", "ret": "FULL"},
		spool.Recipient{Addr: "never@y", Params: map[string]string{"NOTIFY": "NEVER"}},
		spool.Recipient{Addr: "success-only@y", Params: map[string]string{"NOTIFY": "SUCCESS"}},
		spool.Recipient{Addr: "gone@y", Params: map[string]string{"NOTIFY": "FAILURE", "ORCPT": "rfc822;Gone@Y"}},
		spool.Recipient{Addr: "ok@y", Params: map[string]string{"NOTIFY": "SUCCESS,FAILURE"}},
		spool.Recipient{Addr: "quiet@y"},
	)
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	h.waitFor("two notices", func() bool { return len(h.notices("sender@x")) == 2 })
	var failure, success string
	for _, n := range h.notices("sender@x") {
		if strings.Contains(n, "Subject: Successful Mail Delivery Report") {
			success = n
		} else {
			failure = n
		}
	}
	for _, want := range []string{"Subject: Undelivered Mail Returned to Sender", "Original-Envelope-Id: QQ314159",
		"Original-Recipient: rfc822;Gone@Y\nFinal-Recipient: rfc822; gone@y\nAction: failed", "Content-Type: message/rfc822\n\nSubject: test\n\nbody\n"} {
		if !strings.Contains(failure, want) {
			t.Errorf("failure report lacks %q:\n%s", want, failure)
		}
	}
	for _, name := range []string{"never@y", "success-only@y", "ok@y", "quiet@y"} {
		if strings.Contains(failure, "Final-Recipient: rfc822; "+name) {
			t.Errorf("failure report names %s:\n%s", name, failure)
		}
	}
	if !strings.Contains(success, "Final-Recipient: rfc822; ok@y\nAction: delivered\nStatus: 2.0.0") ||
		strings.Contains(success, "quiet@y") || strings.Contains(success, "gone@y") {
		t.Errorf("success notice:\n%s", success)
	}
	log := h.log.String()
	if !strings.Contains(log, id+": sender non-delivery notification: ") || !strings.Contains(log, id+": sender delivery status notification: ") {
		t.Errorf("log:\n%s", log)
	}
}

// A success notice is for final delivery here; mail handed to the smtp
// transport is the next hop's to confirm.
func TestNotifySuccessOnlyForLocalDelivery(t *testing.T) {
	h := start(t, nil)
	id := h.queueDSN("sender@x", nil, spool.Recipient{Addr: "far@elsewhere.example", Params: map[string]string{"NOTIFY": "SUCCESS"}})
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	if n := h.notices("sender@x"); len(n) != 0 {
		t.Errorf("notices for relayed mail: %q", n)
	}
}
