// Package mime parses RFC 5322 messages with MIME structure (RFC 2045–2047,
// RFC 2231) into what an IMAP server serves: ENVELOPE, BODY and BODYSTRUCTURE
// (RFC 3501 §7.4.2, RFC 9051 §7.5.2), BODY[section] ranges (RFC 3501 §6.4.5),
// BINARY[section] decoding (RFC 3516), and decoded header and body text for
// SEARCH.
//
// The output is byte-for-byte what Dovecot writes for the same message, so
// that clients moving between the two servers see the same structure and can
// keep their caches.
//
// # Line endings
//
// Parse accepts messages with CRLF line endings, with bare LF line endings (as
// Maildir stores them), or a mix. Offsets and lengths (Offset, HeaderLen,
// BodyOffset, BodyLen) are in octets of the data as given, so a server can
// read the bytes it stores; sizes (HeaderSize, BodySize, Size) count every
// line ending as CRLF, which is what IMAP reports in RFC822.SIZE, BODYSTRUCTURE
// and literal lengths. Section readers convert bare LF to CRLF, so what they
// return always has the reported size.
//
// # Limits
//
// Hostile messages are served, never rejected: when a limit below is exceeded
// the part concerned stops being parsed and becomes an opaque leaf (Part.Opaque)
// whose octets are still served as they are. Every step is linear in the size
// of the message.
package mime
