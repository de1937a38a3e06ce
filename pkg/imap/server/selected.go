package server

import (
	"errors"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// selected is a session's view of its selected mailbox: the sequence
// numbers the client knows (uids[seq-1]), which messages are \Recent for
// it, expunges it has not been told about yet, and the mod-sequence up to
// which it has been told everything. Four bytes per message.
type selected struct {
	mbox        imap.Mailbox
	name        string
	readOnly    bool
	uids        []uint32
	uidsShared  bool // uids belongs to the store's snapshot: copy before changing in place
	recent      imap.UIDSet
	pending     imap.UIDSet // expunged in the store, still numbered here
	modseq      uint64
	uidNext     uint32
	validity    uint32
	keywords    []string
	newKeywords bool
	noModSeq    bool
	own         map[uint32]uint64 // flag changes this session reported itself
	saved       imap.UIDSet       // SEARCHRES "$" (RFC 5182)
}

func (v *selected) close() {
	v.mbox.SetNotify(nil)
	v.mbox.Close()
}

func (v *selected) lastUID() uint32 {
	if len(v.uids) == 0 {
		return 0
	}
	return v.uids[len(v.uids)-1]
}

// seqOf returns the sequence number of uid, or 0.
func (v *selected) seqOf(uid uint32) uint32 {
	i := sort.Search(len(v.uids), func(i int) bool { return v.uids[i] >= uid })
	if i < len(v.uids) && v.uids[i] == uid {
		return uint32(i + 1)
	}
	return 0
}

// uidsIn returns the UIDs of the view that lie in r.
func (v *selected) uidsIn(r imap.UIDSet) imap.UIDSet {
	var out imap.UIDSet
	for _, rg := range r {
		i := sort.Search(len(v.uids), func(i int) bool { return v.uids[i] >= rg.Lo })
		for ; i < len(v.uids) && v.uids[i] <= rg.Hi; i++ {
			out = out.Add(v.uids[i])
		}
	}
	return out
}

var errBadSet = errors.New("invalid messageset")

// resolve maps a client's set to the UIDs of the view it names. Sequence
// numbers beyond the mailbox are an error (Dovecot answers BAD); UIDs that
// do not exist are ignored (RFC 3501 §6.4.8).
func (v *selected) resolve(set imap.SeqSet, uid bool) (imap.UIDSet, error) {
	if set.Saved {
		return v.uidsIn(v.saved), nil
	}
	if uid {
		max := v.lastUID()
		if max == 0 {
			// "*" is UIDNEXT in an empty mailbox (RFC 3501 §9); nothing
			// exists either way.
			return nil, nil
		}
		return v.uidsIn(set.Resolve(max)), nil
	}
	n := uint32(len(v.uids))
	if n == 0 && set.HasStar() {
		return nil, nil // "1:*" in an empty mailbox names nothing
	}
	if set.MaxNumber() > n {
		return nil, errBadSet
	}
	if n == 0 {
		return nil, nil
	}
	var out imap.UIDSet
	for _, r := range set.Resolve(n) {
		for seq := r.Lo; seq <= r.Hi; seq++ {
			out = out.Add(v.uids[seq-1])
		}
	}
	return out, nil
}

// cmdSelect is SELECT and EXAMINE (RFC 3501 §6.3.1-2, RFC 9051 §6.3.2,
// RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC).
func (s *session) cmdSelect(c *wire.Command) error {
	readOnly := c.Name == "EXAMINE"
	var q *wire.QResyncArgs
	if c.Select != nil {
		if c.Select.QResync != nil {
			if !s.qresync() {
				return s.badReply(c.Tag, "Error in IMAP command "+c.Name+": QRESYNC isn't enabled.")
			}
			q = c.Select.QResync
		}
		if c.Select.CondStore {
			s.ext |= extCondStore
		}
	}
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
		s.state = stateAuth
		// RFC 7162 §3.2.11, RFC 9051 §7.1: mark where the old mailbox's
		// responses end.
		if s.qresync() || s.rev2() {
			s.out.Raw("* OK [CLOSED] Previous mailbox closed.\r\n")
		}
	}
	name, ok := s.mailboxName(c.Tag, c.Mailbox)
	if !ok {
		return nil
	}
	mbox, err := s.user.Open(bg, name, readOnly)
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	info := mbox.Info()
	v := &selected{mbox: mbox, name: name, readOnly: readOnly || info.ReadOnly, validity: info.UIDValidity,
		keywords: info.Keywords, newKeywords: info.NewKeywords, noModSeq: info.NoModSeq}
	resync := q != nil && q.UIDValidity == info.UIDValidity && !info.NoModSeq
	type change struct {
		uid    uint32
		flags  []string
		modseq uint64
	}
	var changes []change
	var firstUnseen uint32
	var ch imap.Changes
	if sn, ok := mbox.(imap.Snapshotter); ok && !resync {
		var snap *imap.Snapshot
		if snap, err = sn.Snapshot(bg); err == nil {
			v.uids, v.uidsShared = snap.UIDs, true
			v.recent, firstUnseen, ch = snap.Recent, snap.FirstUnseen, snap.Changes
		}
	} else {
		ch, err = mbox.Poll(bg, 0, func(mi *imap.MessageInfo) {
			if mi.UID <= v.lastUID() {
				return // out of order: ignore rather than corrupt numbering
			}
			v.uids = append(v.uids, mi.UID)
			if mi.Recent {
				v.recent = v.recent.Add(mi.UID)
			}
			if firstUnseen == 0 && !imap.HasFlag(mi.Flags, imap.FlagSeen) {
				firstUnseen = uint32(len(v.uids))
			}
			if resync && mi.ModSeq > q.ModSeq {
				changes = append(changes, change{mi.UID, append([]string(nil), mi.Flags...), mi.ModSeq})
			}
		})
	}
	if err != nil {
		mbox.Close()
		s.storeError(c.Tag, err)
		return nil
	}
	v.modseq, v.uidNext = ch.HighestModSeq, ch.UIDNext
	if ch.Keywords != nil {
		v.keywords = ch.Keywords
	}
	s.writeFlags(v)
	s.out.Raw("* " + strconv.Itoa(len(v.uids)) + " EXISTS\r\n")
	if !s.rev2() {
		s.out.Raw("* " + u64(v.recent.Count()) + " RECENT\r\n")
		if firstUnseen > 0 {
			s.out.Raw("* OK [UNSEEN " + u32(firstUnseen) + "] First unseen.\r\n")
		}
	}
	s.out.Raw("* OK [UIDVALIDITY " + u32(v.validity) + "] UIDs valid\r\n")
	s.out.Raw("* OK [UIDNEXT " + u32(v.uidNext) + "] Predicted next UID\r\n")
	if s.condstore() {
		if v.noModSeq {
			s.out.Raw("* OK [NOMODSEQ] No permanent modsequences\r\n")
		} else {
			s.out.Raw("* OK [HIGHESTMODSEQ " + u64(v.modseq) + "] Highest\r\n")
		}
	}
	if s.rev2() {
		// RFC 9051 §6.3.2: a LIST response with the mailbox name.
		s.out.Raw("* LIST () ")
		s.out.String(string(s.user.Delimiter()))
		s.out.Byte(' ')
		s.writeName(name)
		s.out.CRLF()
	}
	if resync {
		if ex, err := mbox.Poll(bg, q.ModSeq, nil); err == nil {
			gone := imap.UIDSet{}
			var known imap.UIDSet
			if q.KnownUIDs != nil {
				known = q.KnownUIDs.Resolve(v.uidNext - 1)
			}
			for _, r := range ex.Expunged {
				for uid := r.Lo; uid <= r.Hi && uid < v.uidNext; uid++ {
					if v.seqOf(uid) == 0 && (known == nil || known.Contains(uid)) {
						gone = gone.Add(uid)
					}
					if uid == r.Hi {
						break
					}
				}
			}
			if len(gone) > 0 {
				s.out.Raw("* VANISHED (EARLIER) ")
				s.out.RawBytes(gone.AppendTo(nil))
				s.out.CRLF()
			}
		}
		for _, chg := range changes {
			s.writeFlagsFetch(v, v.seqOf(chg.uid), chg.uid, chg.flags, chg.modseq, true)
		}
	}
	s.sel = v
	s.state = stateSelected
	mbox.SetNotify(s.notify)
	if v.readOnly {
		s.reply(c.Tag, "OK", "[READ-ONLY] "+strings.ToUpper(c.Name[:1])+strings.ToLower(c.Name[1:])+" completed.")
	} else {
		s.reply(c.Tag, "OK", "[READ-WRITE] "+strings.ToUpper(c.Name[:1])+strings.ToLower(c.Name[1:])+" completed.")
	}
	return nil
}

// writeFlags sends FLAGS and PERMANENTFLAGS for the view.
func (s *session) writeFlags(v *selected) {
	all := strings.Join(imap.SystemFlags, " ")
	kw := strings.Join(v.keywords, " ")
	if kw != "" {
		all += " " + kw
	}
	s.out.Raw("* FLAGS (" + all + ")\r\n")
	if v.readOnly {
		s.out.Raw("* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n")
		return
	}
	if v.newKeywords {
		all += ` \*`
	}
	s.out.Raw("* OK [PERMANENTFLAGS (" + all + ")] Flags permitted.\r\n")
}

// writeFlagsFetch sends an unsolicited or STORE-caused FETCH with FLAGS,
// adding UID and MODSEQ once CONDSTORE is in use (RFC 7162 §3.2.4:
// QRESYNC needs the UID in every untagged FETCH).
func (s *session) writeFlagsFetch(v *selected, seq, uid uint32, flags []string, modseq uint64, withUID bool) {
	if seq == 0 {
		return
	}
	s.out.Raw("* " + u32(seq) + " FETCH (")
	if withUID || s.condstore() {
		s.out.Raw("UID " + u32(uid) + " ")
	}
	s.writeFlagList(v, uid, flags)
	if s.condstore() && !v.noModSeq {
		s.out.Raw(" MODSEQ (" + u64(modseq) + ")")
	}
	s.out.Raw(")\r\n")
}

// writeFlagList writes "FLAGS (...)", with \Recent for IMAP4rev1.
func (s *session) writeFlagList(v *selected, uid uint32, flags []string) {
	s.out.Raw("FLAGS (")
	n := 0
	for _, f := range flags {
		if f == imap.FlagRecent {
			continue
		}
		if n > 0 {
			s.out.Byte(' ')
		}
		s.out.Raw(f)
		n++
	}
	if !s.rev2() && v.recent.Contains(uid) {
		if n > 0 {
			s.out.Byte(' ')
		}
		s.out.Raw(imap.FlagRecent)
	}
	s.out.Byte(')')
}

// notify is the store's wake-up call; it may run on any goroutine.
func (s *session) notify() {
	s.wake.Store(true)
	if s.idling.Load() {
		s.mu.Lock()
		s.conn.SetReadDeadline(time.Now())
		s.mu.Unlock()
	}
}

// sync tells the client what changed in the mailbox since it was last
// told: new keywords, expunges (only when allowed, else they wait),
// new messages and flag changes by others.
func (s *session) sync(allowExpunge bool) {
	v := s.sel
	s.wake.Store(false)
	type change struct {
		uid    uint32
		flags  []string
		modseq uint64
	}
	var changes []change
	last := v.lastUID()
	firstNew := len(v.uids)
	ch, err := v.mbox.Poll(bg, v.modseq, func(mi *imap.MessageInfo) {
		if mi.UID > last {
			v.uids = append(v.uids, mi.UID)
			last = mi.UID
			if mi.Recent {
				v.recent = v.recent.Add(mi.UID)
			}
			return
		}
		if m, ok := v.own[mi.UID]; ok && m == mi.ModSeq {
			return
		}
		changes = append(changes, change{mi.UID, append([]string(nil), mi.Flags...), mi.ModSeq})
	})
	v.own = nil
	if err != nil {
		s.cfg.Log.Warning("imap: sync of %q failed user=<%s>: %v", v.name, s.username(), err)
		return
	}
	if ch.Keywords != nil && strings.Join(ch.Keywords, " ") != strings.Join(v.keywords, " ") {
		v.keywords = ch.Keywords
		s.writeFlags(v)
	}
	// Expunges of messages the client knows, plus those held back before.
	added := len(v.uids) - firstNew
	gone := v.pending
	for _, r := range ch.Expunged {
		i := sort.Search(firstNew, func(i int) bool { return v.uids[i] >= r.Lo })
		for ; i < firstNew && v.uids[i] <= r.Hi; i++ {
			gone = gone.Add(v.uids[i])
		}
	}
	if allowExpunge && len(gone) > 0 {
		s.expunge(v, gone)
		v.pending = nil
	} else {
		v.pending = gone
	}
	if added > 0 {
		s.out.Raw("* " + strconv.Itoa(len(v.uids)) + " EXISTS\r\n")
		if !s.rev2() {
			s.out.Raw("* " + u64(v.recent.Count()) + " RECENT\r\n")
		}
	}
	for _, chg := range changes {
		if v.pending.Contains(chg.uid) {
			continue
		}
		s.writeFlagsFetch(v, v.seqOf(chg.uid), chg.uid, chg.flags, chg.modseq, s.qresync())
	}
	if ch.HighestModSeq > v.modseq {
		v.modseq = ch.HighestModSeq
	}
	if ch.UIDNext > v.uidNext {
		v.uidNext = ch.UIDNext
	}
}

// expunge removes gone from the view and tells the client: VANISHED once
// QRESYNC is enabled (RFC 7162 §3.2.10), else one EXPUNGE per message,
// each numbered after the ones before it were removed.
func (s *session) expunge(v *selected, gone imap.UIDSet) {
	var seqs []uint32
	var vanished imap.UIDSet
	j, removed := 0, uint32(0)
	if v.uidsShared {
		v.uids, v.uidsShared = slices.Clone(v.uids), false
	}
	for i, uid := range v.uids {
		if gone.Contains(uid) {
			seqs = append(seqs, uint32(i+1)-removed)
			vanished = vanished.Add(uid)
			removed++
			continue
		}
		v.uids[j] = uid
		j++
	}
	v.uids = v.uids[:j]
	for _, r := range vanished {
		for uid := r.Lo; ; uid++ {
			v.recent = v.recent.Remove(uid)
			if uid == r.Hi {
				break
			}
		}
	}
	if len(vanished) == 0 {
		return
	}
	if s.qresync() {
		s.out.Raw("* VANISHED ")
		s.out.RawBytes(vanished.AppendTo(nil))
		s.out.CRLF()
		return
	}
	for _, seq := range seqs {
		s.out.Raw("* " + u32(seq) + " EXPUNGE\r\n")
	}
}

// cmdClose is CLOSE (RFC 3501 §6.4.2: expunge silently) and UNSELECT
// (RFC 3691: do not).
func (s *session) cmdClose(c *wire.Command) {
	v := s.sel
	if c.Name == "CLOSE" && !v.readOnly {
		if err := v.mbox.Expunge(bg, nil); err != nil {
			s.cfg.Log.Warning("imap: CLOSE expunge failed user=<%s>: %v", s.username(), err)
		}
	}
	v.close()
	s.sel = nil
	s.state = stateAuth
	if c.Name == "CLOSE" {
		s.reply(c.Tag, "OK", "Close completed.")
	} else {
		s.reply(c.Tag, "OK", "Unselect completed.")
	}
}

// cmdExpunge is EXPUNGE and UID EXPUNGE (RFC 4315 §2.1).
func (s *session) cmdExpunge(c *wire.Command) error {
	v := s.sel
	if v.readOnly {
		s.done(c, "NO", "[CANNOT] Mailbox is read-only.")
		return nil
	}
	var uids imap.UIDSet
	if c.UID {
		var err error
		if uids, err = v.resolve(c.Seq, true); err != nil {
			return s.badReply(c.Tag, "Error in IMAP command UID EXPUNGE: Invalid messageset.")
		}
		if len(uids) == 0 {
			s.done(c, "OK", "Expunge completed.")
			return nil
		}
	}
	if err := v.mbox.Expunge(bg, uids); err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	s.doneExpunged(c, "Expunge completed.")
	return nil
}

// cmdIdle is IDLE (RFC 2177). The session waits for DONE with no buffers,
// woken by the store's notification (through a read deadline, so an idle
// session needs no second goroutine) to report changes at once, and by a
// keep-alive every two minutes as Dovecot sends.
func (s *session) cmdIdle(c *wire.Command) error {
	s.out.Raw("+ idling\r\n")
	if s.sel != nil {
		s.sync(true)
	}
	deadline := time.Now().Add(s.cfg.IdleTimeout)
	keepalive := time.Now().Add(idleKeepalive)
	s.idling.Store(true)
	for {
		if err := s.out.Release(); err != nil {
			s.idling.Store(false)
			return err
		}
		s.dec.Release()
		wake := deadline
		if keepalive.Before(wake) {
			wake = keepalive
		}
		s.conn.SetReadDeadline(wake)
		if s.closed.Load() {
			s.idling.Store(false)
			s.bye("Server shutting down.")
			return errShutdown
		}
		if s.wake.Load() && s.sel != nil {
			s.sync(true)
			continue
		}
		err := s.in.Wait()
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			s.idling.Store(false)
			return err
		}
		now := time.Now()
		switch {
		case s.closed.Load():
			s.idling.Store(false)
			s.bye("Server shutting down.")
			return err
		case !now.Before(deadline):
			s.idling.Store(false)
			s.bye("Disconnected for inactivity.")
			return err
		case !now.Before(keepalive):
			s.out.Raw("* OK Still here\r\n")
			keepalive = now.Add(idleKeepalive)
		}
	}
	s.idling.Store(false)
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.CommandTimeout))
	line, err := s.dec.ReadLine()
	if err != nil {
		if we, ok := err.(*wire.Error); ok {
			s.bye(we.Text)
		}
		return err
	}
	if !strings.EqualFold(line, "DONE") {
		// RFC 2177: only DONE may follow; anything else ends IDLE.
		return s.badReply(c.Tag, "Expected DONE.")
	}
	s.done(c, "OK", "Idle completed.")
	return nil
}

const idleKeepalive = 2 * time.Minute

var errShutdown = errors.New("server shutting down")

func u32(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
func u64(n uint64) string { return strconv.FormatUint(n, 10) }
