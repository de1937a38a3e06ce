package mailbox

import (
	"bytes"
	"os"
	"strings"
)

// subscriptions (subscription-file.c): at the Maildir root. A file that
// starts with "V\t2\n\n" is version 2: one mailbox per line, its hierarchy
// levels separated by TAB and each level tab-escaped (\001 -> \0011,
// \t -> \001t, \r -> \001r, \n -> \001n). A file without the header is
// version 1, full names with the separator, and keeps that format. A new
// file is version 2. Names are Dovecot's storage names, so on-disk modified
// UTF-7; INBOX is written as INBOX. Lines posthorn cannot decode are kept
// as they are when the file is rewritten.

const (
	subsFile   = "subscriptions"
	subsHeader = "V\t2\n\n"
)

func tabEscape(s string) string {
	if !strings.ContainsAny(s, "\x01\t\r\n") {
		return s
	}
	r := strings.NewReplacer("\x01", "\x011", "\t", "\x01t", "\r", "\x01r", "\n", "\x01n")
	return r.Replace(s)
}

func tabUnescape(s string) string {
	if !strings.Contains(s, "\x01") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\x01' && i+1 < len(s) {
			i++
			switch s[i] {
			case '1':
				b.WriteByte('\x01')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'n':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseSubscriptions returns the version and the storage names of each
// line (raw lines in the same order, for rewriting).
func parseSubscriptions(data []byte) (version int, names, raw []string) {
	version = 1
	if bytes.HasPrefix(data, []byte(subsHeader)) {
		version = 2
		data = data[len(subsHeader):]
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" {
			continue
		}
		raw = append(raw, l)
		if version == 2 {
			parts := strings.Split(l, "\t")
			for i := range parts {
				parts[i] = tabUnescape(parts[i])
			}
			names = append(names, strings.Join(parts, string(Sep)))
		} else {
			names = append(names, l)
		}
	}
	return version, names, raw
}

func subsLine(version int, storage string) string {
	if version < 2 {
		return storage
	}
	parts := strings.Split(storage, string(Sep))
	for i := range parts {
		parts[i] = tabEscape(parts[i])
	}
	return strings.Join(parts, "\t")
}

// Subscriptions returns the subscribed mailbox names (UTF-8), in file
// order, skipping lines that are not valid names.
func (s *Store) Subscriptions() ([]string, error) {
	data, err := readAll(s.root, subsFile, 16<<20)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	_, names, _ := parseSubscriptions(data)
	var out []string
	for _, n := range names {
		if strings.EqualFold(n, Inbox) {
			out = append(out, Inbox)
			continue
		}
		u, err := DecodeUTF7(n)
		if err != nil {
			continue
		}
		if v, err := ValidateName(u, false); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// Subscribe adds name to the subscriptions (SUBSCRIBE, RFC 3501 §6.3.6).
// The mailbox need not exist.
func (s *Store) Subscribe(name string) error { return s.setSubscribed(name, true) }

// Unsubscribe removes name (UNSUBSCRIBE).
func (s *Store) Unsubscribe(name string) error { return s.setSubscribed(name, false) }

func (s *Store) setSubscribed(name string, set bool) error {
	name, err := ValidateName(name, false)
	if err != nil {
		return err
	}
	storage := name
	if name != Inbox {
		storage = storageName(name)
	}
	l, err := takeLock(s.root, subsFile)
	if err != nil {
		return err
	}
	defer l.release()
	data, err := readAll(s.root, subsFile, 16<<20)
	version := 2
	var names, raw []string
	if err == nil {
		version, names, raw = parseSubscriptions(data)
	} else if !os.IsNotExist(err) {
		return err
	}
	var out bytes.Buffer
	if version == 2 {
		out.WriteString(subsHeader)
	}
	found, changed := false, false
	for i, n := range names {
		if n == storage {
			found = true
			if !set {
				changed = true
				continue
			}
		}
		out.WriteString(raw[i] + "\n")
	}
	if set && !found {
		out.WriteString(subsLine(version, storage) + "\n")
		changed = true
	}
	if !changed {
		return nil
	}
	tmp := subsFile + ".tmp"
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return err
	}
	_, err = f.Write(out.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, subsFile)
	}
	if err != nil {
		s.root.Remove(tmp)
	}
	return err
}
