package server

import (
	"errors"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// cmdSearch is SEARCH and UID SEARCH (RFC 3501 §6.4.4) with ESEARCH
// (RFC 4731), SEARCHRES (RFC 5182), MODSEQ (RFC 7162 §3.1.5) and the
// IMAP4rev2 rules (RFC 9051 §6.4.4: ESEARCH responses).
func (s *session) cmdSearch(c *wire.Command) error {
	v := s.sel
	a := c.Search
	switch a.Charset {
	case "", "UTF-8", "US-ASCII":
	default:
		s.done(c, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.")
		return nil
	}
	var usesModSeq bool
	a.Key.Walk(func(k *imap.SearchKey) {
		if k.Op == imap.SearchModSeq {
			usesModSeq = true
		}
	})
	if usesModSeq {
		if v.noModSeq {
			return s.badReply(c.Tag, "Error in IMAP command SEARCH: Mailbox has no modsequences.")
		}
		s.ext |= extCondStore // RFC 7162 §3.1
	}
	// Resolve set keys against the view as it is now.
	var setErr error
	a.Key.Walk(func(k *imap.SearchKey) {
		if k.Op == imap.SearchSeq || k.Op == imap.SearchUID {
			if k.Set.Saved {
				return
			}
			if k.Op == imap.SearchSeq && k.Set.MaxNumber() > uint32(len(v.uids)) {
				setErr = errBadSet
			}
		}
	})
	if setErr != nil {
		return s.badReply(c.Tag, "Error in IMAP command SEARCH: Invalid messageset.")
	}
	ev := &evaluator{s: s, v: v, n: uint32(len(v.uids)), maxUID: v.lastUID()}
	var all imap.UIDSet
	if len(v.uids) > 0 {
		all = all.AddRange(v.uids[0], v.lastUID())
		all = v.uidsIn(all)
	}
	var result []uint32 // UIDs, ascending
	var maxModSeq uint64
	err := v.mbox.Fetch(bg, all, func(mi *imap.MessageInfo) error {
		ok, err := ev.match(a.Key, mi)
		if err != nil {
			return err
		}
		if ok {
			result = append(result, mi.UID)
			maxModSeq = max(maxModSeq, mi.ModSeq)
		}
		return nil
	})
	if err != nil {
		s.storeError(c.Tag, err)
		return nil
	}
	num := func(uid uint32) uint32 {
		if c.UID {
			return uid
		}
		return v.seqOf(uid)
	}
	if !a.HasReturn && !s.rev2() {
		s.out.Raw("* SEARCH")
		for _, uid := range result {
			s.out.Byte(' ')
			s.out.Number(uint64(num(uid)))
		}
		if usesModSeq && len(result) > 0 {
			s.out.Raw(" (MODSEQ " + u64(maxModSeq) + ")")
		}
		s.out.CRLF()
		s.done(c, "OK", "Search completed.")
		return nil
	}
	opts := map[string]bool{}
	for _, o := range a.Return {
		opts[o] = true
	}
	if len(a.Return) == 0 {
		opts["ALL"] = true // RETURN () and IMAP4rev2 SEARCH mean ALL
	}
	if opts["SAVE"] {
		// RFC 5182 §2.4: with MIN and/or MAX only (no ALL or COUNT), only
		// those are saved.
		var saved imap.UIDSet
		if len(result) > 0 {
			if (opts["MIN"] || opts["MAX"]) && !opts["ALL"] && !opts["COUNT"] {
				if opts["MIN"] {
					saved = saved.Add(result[0])
				}
				if opts["MAX"] {
					saved = saved.Add(result[len(result)-1])
				}
			} else {
				for _, uid := range result {
					saved = saved.Add(uid)
				}
			}
		}
		v.saved = saved
		if len(opts) == 1 {
			// SAVE alone: no ESEARCH response (RFC 5182 §2.1).
			s.done(c, "OK", "Search completed.")
			return nil
		}
	}
	s.out.Raw(`* ESEARCH (TAG `)
	s.out.String(c.Tag)
	s.out.Byte(')')
	if c.UID {
		s.out.Raw(" UID")
	}
	if len(result) > 0 {
		if opts["MIN"] {
			s.out.Raw(" MIN " + u32(num(result[0])))
		}
		if opts["MAX"] {
			s.out.Raw(" MAX " + u32(num(result[len(result)-1])))
		}
		if opts["ALL"] {
			var set imap.UIDSet
			for _, uid := range result {
				set = set.Add(num(uid))
			}
			s.out.Raw(" ALL ")
			s.out.RawBytes(set.AppendTo(nil))
		}
	}
	if opts["COUNT"] {
		s.out.Raw(" COUNT " + u64(uint64(len(result))))
	}
	if usesModSeq && len(result) > 0 {
		s.out.Raw(" MODSEQ " + u64(maxModSeq))
	}
	s.out.CRLF()
	s.done(c, "OK", "Search completed.")
	return nil
}

// evaluator matches search keys against messages.
type evaluator struct {
	s      *session
	v      *selected
	n      uint32
	maxUID uint32
	// The message being matched, opened on first need.
	cur     uint32
	msg     imap.Message
	root    *imap.Part
	openErr error
	// text keeps the text search's buffers from one message to the next.
	text textSearch
}

func (e *evaluator) release() {
	e.text.end()
	if e.msg != nil {
		e.msg.Close()
		e.msg, e.root = nil, nil
	}
}

// message opens the current message for text keys.
func (e *evaluator) message(uid uint32) (imap.Message, *imap.Part, error) {
	if e.cur == uid && (e.msg != nil || e.openErr != nil) {
		return e.msg, e.root, e.openErr
	}
	e.release()
	e.cur, e.openErr = uid, nil
	m, err := e.v.mbox.OpenMessage(bg, uid)
	if err == nil {
		e.root, err = m.Structure()
		if err != nil {
			m.Close()
		} else {
			e.msg = m
			e.text.begin(m)
		}
	}
	e.openErr = err
	return e.msg, e.root, err
}

// match evaluates k, cheap keys before text keys inside AND and OR.
func (e *evaluator) match(k *imap.SearchKey, mi *imap.MessageInfo) (bool, error) {
	ok, err := e.eval(k, mi, false)
	if err == nil && ok {
		ok, err = e.eval(k, mi, true)
	}
	if e.cur == mi.UID {
		e.release()
		e.cur = 0
	}
	if errors.Is(err, imap.ErrExpunged) {
		return false, nil
	}
	return ok, err
}

// costly reports whether a key needs the message content.
func costly(k *imap.SearchKey) bool {
	switch k.Op {
	case imap.SearchHeader, imap.SearchBody, imap.SearchText,
		imap.SearchSentBefore, imap.SearchSentOn, imap.SearchSentSince:
		return true
	}
	for _, c := range k.Children {
		if costly(c) {
			return true
		}
	}
	return false
}

// eval evaluates k. In the first pass (full=false) costly keys count as
// matching so that cheap keys can rule a message out before its content
// is read; NOT of a costly key is also deferred to the second pass.
func (e *evaluator) eval(k *imap.SearchKey, mi *imap.MessageInfo, full bool) (bool, error) {
	if !full && costly(k) {
		switch k.Op {
		case imap.SearchAnd:
		default:
			return true, nil
		}
	}
	switch k.Op {
	case imap.SearchAll:
		return true, nil
	case imap.SearchAnd:
		for _, c := range k.Children {
			if full && costly(c) {
				continue // second pass: cheap ones already passed
			}
			if ok, err := e.eval(c, mi, full); err != nil || !ok {
				return false, err
			}
		}
		if full {
			for _, c := range k.Children {
				if costly(c) {
					if ok, err := e.eval(c, mi, true); err != nil || !ok {
						return false, err
					}
				}
			}
		}
		return true, nil
	case imap.SearchOr:
		for _, c := range k.Children {
			if ok, err := e.eval(c, mi, full); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case imap.SearchNot:
		ok, err := e.eval(k.Children[0], mi, full)
		return !ok, err
	case imap.SearchSeq:
		if k.Set.Saved {
			return e.v.saved.Contains(mi.UID), nil
		}
		seq := e.v.seqOf(mi.UID)
		return seq > 0 && setContains(k.Set, seq, e.n), nil
	case imap.SearchUID:
		if k.Set.Saved {
			return e.v.saved.Contains(mi.UID), nil
		}
		return setContains(k.Set, mi.UID, e.maxUID), nil
	case imap.SearchFlag:
		if strings.EqualFold(k.Flag, imap.FlagRecent) {
			return e.v.recent.Contains(mi.UID), nil
		}
		return imap.HasFlag(mi.Flags, k.Flag), nil
	case imap.SearchBefore:
		return dayOf(mi.Date()).Before(k.Date), nil
	case imap.SearchOn:
		return dayOf(mi.Date()).Equal(k.Date), nil
	case imap.SearchSince:
		return !dayOf(mi.Date()).Before(k.Date), nil
	case imap.SearchLarger:
		return uint64(mi.Size) > k.N, nil
	case imap.SearchSmaller:
		return uint64(mi.Size) < k.N, nil
	case imap.SearchModSeq:
		return mi.ModSeq >= k.N, nil
	case imap.SearchSentBefore, imap.SearchSentOn, imap.SearchSentSince:
		_, root, err := e.message(mi.UID)
		if err != nil {
			return false, err
		}
		d := mi.Date()
		if env := root.Envelope; env != nil && env.Date != nil {
			if t, err := mail.ParseDate(*env.Date); err == nil {
				d = t
			}
		}
		day := dayOf(d)
		switch k.Op {
		case imap.SearchSentBefore:
			return day.Before(k.Date), nil
		case imap.SearchSentOn:
			return day.Equal(k.Date), nil
		}
		return !day.Before(k.Date), nil
	case imap.SearchHeader, imap.SearchBody, imap.SearchText:
		msg, root, err := e.message(mi.UID)
		if err != nil {
			return false, err
		}
		if tm, ok := msg.(imap.TextMatcher); ok {
			return tm.MatchText(k.Op, k.Field, k.Value)
		}
		return e.text.match(root, k.Op, k.Field, k.Value)
	}
	return false, nil
}

// setContains tests membership in a client set with "*" = star, without
// expanding it.
func setContains(set imap.SeqSet, n, star uint32) bool {
	for _, r := range set.Ranges {
		lo, hi := r.Lo, r.Hi
		if lo == imap.Star {
			lo = star
		}
		if hi == imap.Star {
			hi = star
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// dayOf drops the time of day, keeping the date as written in the
// timestamp's own zone (RFC 3501: "disregarding time and timezone").
func dayOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
