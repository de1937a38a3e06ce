package maildir

// UniqueBase returns a new Dovecot-style unique base name,
// <secs>.M<usecs>P<pid>.<host>, from the same per-process clock Deliver
// uses, so names made by the IMAP store and by delivery in one process never
// collide (maildir-filename.c bumps the microseconds the same way). The host
// is escaped as in Deliver.
func UniqueBase(host string) string { return uniqueBase(host) }
