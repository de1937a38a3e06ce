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
// # Where the output may differ from Dovecot's
//
// All 108 messages of the shared golden set give Dovecot's answers byte for
// byte. Elsewhere these deliberate choices, all allowed by RFC 3501/9051,
// can make a difference:
//
//   - ENVELOPE address lists stop at MaxAddresses entries.
//   - A message/rfc822 or message/global part that a limit left unparsed
//     is described as application/octet-stream: the message grammar would
//     need an envelope and body structure it does not have.
//   - When MaxParts is reached, the parts already found keep their exact
//     extent and the rest of the multipart is not split, rather than every
//     later boundary being ignored.
//   - A boundary longer than MaxBoundaryLen still has its close delimiter
//     recognised, by its length.
//   - message/global (RFC 6532 §3.7) is parsed like message/rfc822 and
//     described as such (RFC 9051 media-message).
//
// # Limits
//
// Hostile messages are served, never rejected: when a limit below is exceeded
// the part concerned stops being parsed and becomes an opaque leaf (Part.Opaque)
// whose octets are still served as they are. Every step is linear in the size
// of the message.
package mime
