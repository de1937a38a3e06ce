package mailbox

import "strconv"

// POP3UIDL returns the UIDL of a message for POP3: the P field of its
// dovecot-uidlist record when Dovecot (or a migration) stored one,
// otherwise Dovecot's default pop3_uidl_format "%08Xu%08Xv" (2.4:
// "%{uid | hex(8)}%{uidvalidity | hex(8)}"), so clients that used
// Dovecot's POP3 do not download again.
func (m *Mailbox) POP3UIDL(uid uint32) string {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.ul.lookup(uid); r != nil {
		if p := r.extValue('P'); p != "" {
			return p
		}
	}
	return hex8(uid) + hex8(f.uidValidity)
}

// POP3Order returns the O field of a message's uidlist record (the POP3
// message order a migration preserved), or 0.
func (m *Mailbox) POP3Order(uid uint32) int {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.ul.lookup(uid); r != nil {
		if n, err := strconv.Atoi(r.extValue('O')); err == nil {
			return n
		}
	}
	return 0
}
