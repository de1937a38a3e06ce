// Package config loads posthorn's one configuration file, /etc/posthorn/posthorn.toml.
//
// Every setting has a default that matches what a Debian admin coming from
// Postfix and Dovecot expects (Postfix's main.cf defaults where one exists).
// Relative paths in the file are relative to the folder that holds the file,
// so a development configuration can live in the repository and point at
// ./run/ without knowing where the checkout is.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the installed system reads its configuration.
const DefaultPath = "/etc/posthorn/posthorn.toml"

// EnvPath names the environment variable every command honours, as
// POSTHORN_CONFIG=/path/to/posthorn.toml.
const EnvPath = "POSTHORN_CONFIG"

// Config is the whole configuration. Field tags are the TOML keys.
type Config struct {
	// Path is the absolute path the configuration was read from.
	Path string `toml:"-"`

	// Hostname is Postfix's myhostname: the name in the SMTP greeting,
	// Received: headers and Maildir file names.
	Hostname string `toml:"hostname"`
	// LocalDomains is Postfix's mydestination: domains whose recipients are
	// system users (and aliases). "$hostname" and "localhost" are the default.
	LocalDomains []string `toml:"local_domains"`
	// MailOwner is the user every unprivileged daemon runs as (Postfix's
	// mail_owner). Empty: the user who started master, unchanged.
	MailOwner string `toml:"mail_owner"`
	// SpoolDir holds the queue (DESIGN §2).
	SpoolDir string `toml:"spool_directory"`
	// StateDir holds data that is not queue: the generated certificate, caches.
	StateDir string `toml:"state_directory"`
	// DaemonDir is where master finds the daemon programs.
	DaemonDir string `toml:"daemon_directory"`
	// AliasFile is the aliases(5) file resolved for local domains.
	AliasFile string `toml:"alias_file"`
	// RecipientDelimiter separates a user from an extension (alice+lists).
	// Empty disables subaddressing.
	RecipientDelimiter string `toml:"recipient_delimiter"`
	// MessageSizeLimit is the largest message accepted, in bytes.
	MessageSizeLimit int64 `toml:"message_size_limit"`

	Log     Log     `toml:"log"`
	SMTPD   SMTPD   `toml:"smtpd"`
	POP3    POP3    `toml:"pop3"`
	IMAP    IMAP    `toml:"imap"`
	Queue   Queue   `toml:"queue"`
	Local   Local   `toml:"local"`
	Virtual Virtual `toml:"virtual"`
	TLS     TLS     `toml:"tls"`
	Master  Master  `toml:"master"`
	Auth    Auth    `toml:"auth"`
	SMTP    SMTP    `toml:"smtp"`
	DNS     DNS     `toml:"dns"`
}

// Log selects where the daemons log.
type Log struct {
	// Target is "stderr" (journald, make run) or "syslog" (facility mail).
	Target string `toml:"target"`
	// SyslogName is the first part of every tag: posthorn/smtpd[PID].
	SyslogName string `toml:"syslog_name"`
}

// POP3 configures the POP3 service (pop3-login, pop3d).
type POP3 struct {
	// Listen are the addresses of POP3 with STLS (port 110).
	Listen []string `toml:"listen"`
	// ListenTLS are the addresses of POP3S, implicit TLS (port 995).
	ListenTLS []string `toml:"listen_tls"`
}

// IMAP configures the IMAP service (imap-login, imapd).
type IMAP struct {
	// Listen are the addresses of IMAP with STARTTLS (port 143).
	Listen []string `toml:"listen"`
	// ListenTLS are the addresses of IMAPS, implicit TLS (port 993).
	ListenTLS []string `toml:"listen_tls"`
	// Quota limits the storage of every mailbox, in bytes (Maildir++
	// maildirsize, IMAP QUOTA); 0 means none.
	Quota int64 `toml:"quota"`
}

// SMTPD configures the SMTP server.
type SMTPD struct {
	// Listen are the addresses of the MX service (port 25).
	Listen []string `toml:"listen"`
	// Banner follows the 220 code; Postfix's "$myhostname ESMTP $mail_name".
	Banner string `toml:"banner"`
	// RecipientLimit is smtpd_recipient_limit.
	RecipientLimit int `toml:"recipient_limit"`
	// HardErrorLimit is smtpd_hard_error_limit: errors before disconnect.
	HardErrorLimit int `toml:"hard_error_limit"`
	// JunkCommandLimit is smtpd_junk_command_limit (NOOP, RSET, VRFY, HELP...).
	JunkCommandLimit int `toml:"junk_command_limit"`
	// Timeout is smtpd_timeout: how long one command or data read may take.
	Timeout Duration `toml:"timeout"`
	// LineLengthLimit is line_length_limit for command lines.
	LineLengthLimit int `toml:"line_length_limit"`
	// HeaderSizeLimit is header_size_limit: the largest single header.
	HeaderSizeLimit int `toml:"header_size_limit"`
	// HopCountLimit is hopcount_limit: Received: headers before a loop is declared.
	HopCountLimit int `toml:"hopcount_limit"`
	// ProcessLimit caps concurrent SMTP sessions (default_process_limit).
	ProcessLimit int `toml:"process_limit"`
	// RelayNetworks (mynetworks) may relay without authentication.
	// Empty by default: only authenticated users relay.
	RelayNetworks []string `toml:"relay_networks"`
	// SubmissionListen are the addresses of message submission with
	// STARTTLS (RFC 6409, port 587); SubmissionsListen those of submission
	// with implicit TLS (RFC 8314, port 465). Both accept mail from
	// authenticated users only.
	SubmissionListen  []string `toml:"submission_listen"`
	SubmissionsListen []string `toml:"submissions_listen"`
	// AllowPlaintextAuthOnLoopback offers AUTH without TLS to clients on a
	// loopback address (the development instance, DESIGN §5).
	AllowPlaintextAuthOnLoopback bool `toml:"allow_plaintext_auth_on_loopback"`
	// SenderLoginMap is Postfix's smtpd_sender_login_maps as a file of
	// "address  login1, login2" lines: who may use which envelope sender.
	// Empty: users send as their own address only.
	SenderLoginMap string `toml:"sender_login_map"`
	// ReceivedAuthUser names the SASL login in Received: (Postfix's
	// smtpd_sasl_authenticated_header).
	ReceivedAuthUser bool `toml:"received_auth_user"`
}

// Queue configures qmgr (Postfix's defaults).
type Queue struct {
	RunDelay        Duration `toml:"queue_run_delay"`
	MinimalBackoff  Duration `toml:"minimal_backoff_time"`
	MaximalBackoff  Duration `toml:"maximal_backoff_time"`
	MaximalLifetime Duration `toml:"maximal_queue_lifetime"`
	BounceLifetime  Duration `toml:"bounce_queue_lifetime"`
	// DelayWarningTime sends the sender a warning once a message has
	// waited this long (Postfix's delay_warning_time); 0 turns it off.
	DelayWarningTime Duration `toml:"delay_warning_time"`
	LocalConcurrency int      `toml:"local_concurrency"`
}

// Local configures delivery to system users.
type Local struct {
	// HomeMailbox is Postfix's home_mailbox: "Maildir/" delivers to
	// ~/Maildir/. Empty selects mbox in MailSpoolDir (Debian's default).
	HomeMailbox string `toml:"home_mailbox"`
	// MailSpoolDir is where mbox files live (/var/mail).
	MailSpoolDir string `toml:"mail_spool_directory"`
	// DeliveryUser is who the local daemon runs as; it needs root to
	// become each mailbox owner. Empty: the user who started master.
	DeliveryUser string `toml:"delivery_user"`
	// DefaultPrivs is Postfix's default_privs: the user whose rights run
	// the commands and write the files named in a root-owned aliases file
	// (and stand in for root wherever root's rights would be used). Never
	// root.
	DefaultPrivs string `toml:"default_privs"`
	// AllowMailToCommands and AllowMailToFiles are Postfix's
	// allow_mail_to_commands and allow_mail_to_files: where "|command"
	// and "/file" destinations are honoured: "alias", "forward",
	// "include".
	AllowMailToCommands []string `toml:"allow_mail_to_commands"`
	AllowMailToFiles    []string `toml:"allow_mail_to_files"`
	// CommandTimeLimit is command_time_limit: how long a command may run
	// before it is killed and the delivery deferred.
	CommandTimeLimit Duration `toml:"command_time_limit"`
	// LockTimeout bounds the wait for a mailbox locked by another program
	// (Postfix: deliver_lock_attempts 20 x deliver_lock_delay 1 s).
	LockTimeout Duration `toml:"lock_timeout"`
}

// Where aliases(5) destinations can come from, for Local.AllowMailTo*.
const (
	FromAlias   = "alias"
	FromForward = "forward"
	FromInclude = "include"
)

// Allows reports whether list (AllowMailToCommands or AllowMailToFiles)
// permits a destination found in source (FromAlias, ...).
func Allows(list []string, source string) bool {
	for _, s := range list {
		if s == source {
			return true
		}
	}
	return false
}

// Virtual configures mailboxes that belong to no system user.
type Virtual struct {
	// Domains hold virtual users only.
	Domains []string `toml:"domains"`
	// UsersFile is a Dovecot passwd-file: user@domain:{SCHEME}hash:...
	UsersFile string `toml:"users_file"`
	// AliasFile is Postfix's virtual_alias_maps, in virtual(5) format:
	// "address target, target" lines, with @domain catch-alls. Empty:
	// none.
	AliasFile string `toml:"alias_file"`
	// Mailbox is the Maildir of a virtual user, with Dovecot's variables
	// %d (domain), %n (user without domain) and %u (user@domain).
	Mailbox string `toml:"mailbox"`
	// User and Group own every virtual mailbox (vmail). Empty: the user
	// who started master.
	User  string `toml:"user"`
	Group string `toml:"group"`
}

// TLS names the certificate used by every TLS service.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Generate creates a self-signed pair at the paths above when missing.
	Generate bool `toml:"generate"`
}

// Master configures supervision.
type Master struct {
	// StopGrace is how long deliveries in flight may take at shutdown.
	StopGrace Duration `toml:"stop_grace"`
}

// Auth configures the auth daemon, which checks every password (SMTP
// AUTH, IMAP, POP3).
type Auth struct {
	// SystemUsers lets system users log in with their system password,
	// checked through PAM: bare names and names in LocalDomains.
	SystemUsers bool `toml:"system_users"`
	// PasswdFiles are Dovecot passwd-files consulted after
	// Virtual.UsersFile for names in virtual domains.
	PasswdFiles []string `toml:"passwd_files"`
	// FirstValidUID is Dovecot's first_valid_uid: system users below it
	// (root, system accounts) never log in.
	FirstValidUID int `toml:"first_valid_uid"`
	// FailureDelay is how long the first failed attempt waits for its
	// answer; each further recent failure of the client or the user
	// doubles it, up to MaxFailureDelay (Dovecot's auth penalty).
	FailureDelay    Duration `toml:"failure_delay"`
	MaxFailureDelay Duration `toml:"max_failure_delay"`
	// FailureWindow is how long a failure counts.
	FailureWindow Duration `toml:"failure_window"`
	// ClientFailureLimit: a client (IPv4 address, IPv6 /48) with this many
	// failures in the window is refused without a check.
	ClientFailureLimit int `toml:"client_failure_limit"`
	// UserFailureLimit: a user name with this many failures in the window
	// is refused without a check to clients that failed too.
	UserFailureLimit int `toml:"user_failure_limit"`
}

// SMTP configures the outbound SMTP client, smtp(8), after Postfix's smtp_*
// settings.
type SMTP struct {
	// Relayhost is Postfix's relayhost: all mail for other domains goes
	// there. "[host]:port" or "[address]" is used as it is; "host:port"
	// is a domain whose MX hosts are looked up. Empty: direct delivery.
	Relayhost string `toml:"relayhost"`
	// RelayhostUsername and the password in RelayhostPasswordFile (its
	// first line) log in to the relay host with AUTH.
	RelayhostUsername     string `toml:"relayhost_username"`
	RelayhostPasswordFile string `toml:"relayhost_password_file"`
	// AuthAllowCleartext lets the password go over a connection without
	// TLS; otherwise such a delivery is deferred.
	AuthAllowCleartext bool `toml:"auth_allow_cleartext"`
	// AddressPreference is smtp_address_preference: "any", "ipv6" or
	// "ipv4", the family tried first among addresses of equal MX preference.
	AddressPreference string `toml:"address_preference"`
	// ConnectTimeout is smtp_connect_timeout.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// HeloName is smtp_helo_name, "$hostname" by default.
	HeloName string `toml:"helo_name"`
	// Port is the TCP port of mail exchangers (smtp_tcp_port).
	Port int `toml:"port"`
	// DestinationConcurrencyLimit is smtp_destination_concurrency_limit:
	// deliveries at once to one domain (or to the relay host).
	DestinationConcurrencyLimit int `toml:"destination_concurrency_limit"`
	// TLS is smtp_tls_security_level: "none", "may" (STARTTLS when
	// offered) or "encrypt" (STARTTLS required); certificates are not
	// verified at either level.
	TLS string `toml:"tls"`
}

// DNS configures the resolver of the SMTP client.
type DNS struct {
	// Resolvers are name servers as "address" or "address:port". Empty:
	// the nameserver lines of /etc/resolv.conf.
	Resolvers []string `toml:"resolvers"`
}

// RelayhostParts splits SMTP.Relayhost into host, port and whether the
// host was bracketed (no MX lookup, as Postfix's "[host]"). The port is
// SMTP.Port when none is given. An IPv6 address is written
// "[ipv6:2001:db8::1]" or "[2001:db8::1]".
func (s SMTP) RelayhostParts() (host string, port int, bracketed bool, err error) {
	r := strings.TrimSpace(s.Relayhost)
	port = s.Port
	if r == "" {
		return "", 0, false, fmt.Errorf("smtp.relayhost is empty")
	}
	bad := func() (string, int, bool, error) {
		return "", 0, false, fmt.Errorf("smtp.relayhost %q: want host, host:port, [host] or [host]:port", s.Relayhost)
	}
	rest := ""
	if strings.HasPrefix(r, "[") {
		end := strings.IndexByte(r, ']')
		if end < 0 {
			return bad()
		}
		host, rest, bracketed = r[1:end], r[end+1:], true
		if len(host) > 5 && strings.EqualFold(host[:5], "ipv6:") {
			host = host[5:]
		}
	} else {
		host, rest, _ = strings.Cut(r, ":")
		if rest != "" {
			rest = ":" + rest
		}
	}
	if rest != "" {
		p, ok := strings.CutPrefix(rest, ":")
		n, err := strconv.Atoi(p)
		if !ok || err != nil || n < 1 || n > 65535 {
			return bad()
		}
		port = n
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || strings.ContainsAny(host, " \t\r\n/[]@") || (!bracketed && strings.Contains(host, ":")) {
		return bad()
	}
	return host, port, bracketed, nil
}

// MaxAuthFailureDelay bounds auth.max_failure_delay: the daemons asking
// wait for the answer (auth.ClientTimeout is 90 s).
const MaxAuthFailureDelay = time.Minute

// Defaults returns the configuration an empty file gives.
func Defaults() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Config{
		Hostname:           host,
		LocalDomains:       []string{"$hostname", "localhost"},
		MailOwner:          "posthorn",
		SpoolDir:           "/var/spool/posthorn",
		StateDir:           "/var/lib/posthorn",
		DaemonDir:          "/usr/lib/posthorn",
		AliasFile:          "/etc/aliases",
		RecipientDelimiter: "+",
		MessageSizeLimit:   10240000,
		Log:                Log{Target: "stderr", SyslogName: "posthorn"},
		SMTPD: SMTPD{
			Listen:           []string{"0.0.0.0:25", "[::]:25"},
			Banner:           "$hostname ESMTP posthorn",
			RecipientLimit:   1000,
			HardErrorLimit:   20,
			JunkCommandLimit: 100,
			Timeout:          Duration(300 * time.Second),
			LineLengthLimit:  2048,
			HeaderSizeLimit:  102400,
			HopCountLimit:    50,
			ProcessLimit:     100,

			SubmissionListen:             []string{"0.0.0.0:587", "[::]:587"},
			SubmissionsListen:            []string{"0.0.0.0:465", "[::]:465"},
			AllowPlaintextAuthOnLoopback: true,
		},
		POP3: POP3{
			Listen:    []string{"0.0.0.0:110", "[::]:110"},
			ListenTLS: []string{"0.0.0.0:995", "[::]:995"},
		},
		IMAP: IMAP{
			Listen:    []string{"0.0.0.0:143", "[::]:143"},
			ListenTLS: []string{"0.0.0.0:993", "[::]:993"},
		},
		Queue: Queue{
			RunDelay:         Duration(300 * time.Second),
			MinimalBackoff:   Duration(300 * time.Second),
			MaximalBackoff:   Duration(4000 * time.Second),
			MaximalLifetime:  Duration(5 * 24 * time.Hour),
			BounceLifetime:   Duration(5 * 24 * time.Hour),
			LocalConcurrency: 20,
		},
		Local: Local{
			HomeMailbox:         "",
			MailSpoolDir:        "/var/mail",
			DeliveryUser:        "root",
			DefaultPrivs:        "nobody",
			AllowMailToCommands: []string{FromAlias, FromForward},
			AllowMailToFiles:    []string{FromAlias, FromForward},
			CommandTimeLimit:    Duration(1000 * time.Second),
			LockTimeout:         Duration(20 * time.Second),
		},
		Virtual: Virtual{
			UsersFile: "/etc/posthorn/users",
			Mailbox:   "/var/vmail/%d/%n/Maildir",
			User:      "vmail",
			Group:     "vmail",
		},
		TLS: TLS{
			CertFile: "/etc/ssl/certs/ssl-cert-snakeoil.pem",
			KeyFile:  "/etc/ssl/private/ssl-cert-snakeoil.key",
		},
		Master: Master{StopGrace: Duration(30 * time.Second)},
		Auth: Auth{
			SystemUsers:        true,
			PasswdFiles:        []string{},
			FirstValidUID:      1000,
			FailureDelay:       Duration(2 * time.Second),
			MaxFailureDelay:    Duration(15 * time.Second),
			FailureWindow:      Duration(10 * time.Minute),
			ClientFailureLimit: 20,
			UserFailureLimit:   10,
		},
		SMTP: SMTP{
			AddressPreference:           "any",
			ConnectTimeout:              Duration(30 * time.Second),
			HeloName:                    "$hostname",
			Port:                        25,
			DestinationConcurrencyLimit: 20,
			TLS:                         "may",
		},
		DNS: DNS{Resolvers: []string{}},
	}
}

// PathFromEnv returns the configuration path a command uses when it was
// given none: $POSTHORN_CONFIG, else DefaultPath.
func PathFromEnv() string {
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the file at path over the defaults. Unknown keys are an error,
// so a typo never silently falls back to a default.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c := Defaults()
	md, err := toml.DecodeFile(abs, c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", abs, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config %s: unknown setting %s", abs, strings.Join(keys, ", "))
	}
	c.Path = abs
	c.finish(filepath.Dir(abs))
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", abs, err)
	}
	return c, nil
}

// finish expands $hostname, lower-cases domains and makes paths absolute.
func (c *Config) finish(base string) {
	c.Hostname = strings.ToLower(strings.TrimSuffix(c.Hostname, "."))
	c.SMTPD.Banner = strings.ReplaceAll(c.SMTPD.Banner, "$hostname", c.Hostname)
	c.SMTP.HeloName = strings.ReplaceAll(c.SMTP.HeloName, "$hostname", c.Hostname)
	if c.SMTP.HeloName == "" {
		c.SMTP.HeloName = c.Hostname
	}
	expand := func(ds []string) []string {
		var out []string
		for _, d := range ds {
			d = strings.ToLower(strings.TrimSuffix(strings.ReplaceAll(d, "$hostname", c.Hostname), "."))
			if d != "" {
				out = append(out, d)
			}
		}
		return out
	}
	c.LocalDomains = expand(c.LocalDomains)
	c.Virtual.Domains = expand(c.Virtual.Domains)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for _, p := range []*string{&c.SpoolDir, &c.StateDir, &c.DaemonDir, &c.AliasFile,
		&c.Local.MailSpoolDir, &c.Virtual.UsersFile, &c.Virtual.AliasFile, &c.Virtual.Mailbox, &c.TLS.CertFile, &c.TLS.KeyFile, &c.SMTP.RelayhostPasswordFile,
		&c.SMTPD.SenderLoginMap} {
		abs(p)
	}
	for i := range c.Auth.PasswdFiles {
		abs(&c.Auth.PasswdFiles[i])
	}
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t/") {
		return fmt.Errorf("hostname %q is not a host name", c.Hostname)
	}
	if c.MessageSizeLimit <= 0 {
		return fmt.Errorf("message_size_limit must be positive")
	}
	for name, v := range map[string]int64{
		"smtpd.recipient_limit": int64(c.SMTPD.RecipientLimit), "smtpd.hard_error_limit": int64(c.SMTPD.HardErrorLimit),
		"smtpd.junk_command_limit": int64(c.SMTPD.JunkCommandLimit), "smtpd.header_size_limit": int64(c.SMTPD.HeaderSizeLimit),
		"smtpd.hopcount_limit": int64(c.SMTPD.HopCountLimit), "smtpd.process_limit": int64(c.SMTPD.ProcessLimit),
		"smtpd.timeout": int64(c.SMTPD.Timeout), "queue.queue_run_delay": int64(c.Queue.RunDelay),
		"queue.maximal_queue_lifetime": int64(c.Queue.MaximalLifetime), "queue.bounce_queue_lifetime": int64(c.Queue.BounceLifetime),
		"master.stop_grace":        int64(c.Master.StopGrace),
		"local.command_time_limit": int64(c.Local.CommandTimeLimit), "local.lock_timeout": int64(c.Local.LockTimeout),
		"smtp.connect_timeout": int64(c.SMTP.ConnectTimeout), "smtp.destination_concurrency_limit": int64(c.SMTP.DestinationConcurrencyLimit),
	} {
		if v <= 0 {
			return fmt.Errorf("%s must be positive", name)
		}
	}
	if c.IMAP.Quota < 0 {
		return fmt.Errorf("imap.quota must not be negative")
	}
	if c.SMTPD.LineLengthLimit < 512 {
		return fmt.Errorf("smtpd.line_length_limit must be at least 512 (RFC 5321 §4.5.3.1.4)")
	}
	if c.Queue.MinimalBackoff <= 0 || c.Queue.MaximalBackoff < c.Queue.MinimalBackoff {
		return fmt.Errorf("queue: maximal_backoff_time must be at least minimal_backoff_time > 0")
	}
	if c.Queue.LocalConcurrency <= 0 {
		return fmt.Errorf("queue.local_concurrency must be positive")
	}
	switch c.Local.DefaultPrivs {
	case "", "root", "0":
		return fmt.Errorf("local.default_privs must name an unprivileged user, not %q", c.Local.DefaultPrivs)
	}
	for name, list := range map[string][]string{"local.allow_mail_to_commands": c.Local.AllowMailToCommands,
		"local.allow_mail_to_files": c.Local.AllowMailToFiles} {
		for _, v := range list {
			if v != FromAlias && v != FromForward && v != FromInclude {
				return fmt.Errorf("%s: %q is not one of alias, forward, include", name, v)
			}
		}
	}
	for _, d := range c.Virtual.Domains {
		if c.IsLocalDomain(d) {
			return fmt.Errorf("domain %s is both in local_domains and virtual.domains", d)
		}
	}
	if len(c.Virtual.Domains) > 0 && !strings.Contains(c.Virtual.Mailbox, "%") {
		return fmt.Errorf("virtual.mailbox %q must contain %%n, %%d or %%u", c.Virtual.Mailbox)
	}
	if a := c.Auth; a.FailureDelay > a.MaxFailureDelay || a.MaxFailureDelay.D() > MaxAuthFailureDelay {
		return fmt.Errorf("auth: failure_delay must not exceed max_failure_delay, which must not exceed %s", MaxAuthFailureDelay)
	}
	if a := c.Auth; a.FailureWindow <= 0 || a.ClientFailureLimit <= 0 || a.UserFailureLimit <= 0 {
		return fmt.Errorf("auth: failure_window, client_failure_limit and user_failure_limit must be positive")
	}
	for _, p := range c.Auth.PasswdFiles {
		if p == "" {
			return fmt.Errorf("auth.passwd_files: empty path")
		}
	}
	if err := c.SMTP.validate(); err != nil {
		return err
	}
	for _, r := range c.DNS.Resolvers {
		host := r
		if ap, err := netip.ParseAddrPort(r); err == nil {
			host = ap.Addr().String()
		}
		if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err != nil {
			return fmt.Errorf("dns.resolvers: %q is not an IP address with an optional :port", r)
		}
	}
	switch c.Log.Target {
	case "stderr", "syslog":
	default:
		return fmt.Errorf("log.target must be stderr or syslog, not %q", c.Log.Target)
	}
	return nil
}

func (s SMTP) validate() error {
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("smtp.port %d is not a TCP port", s.Port)
	}
	switch s.TLS {
	case "none", "may", "encrypt":
	default:
		return fmt.Errorf("smtp.tls must be none, may or encrypt, not %q", s.TLS)
	}
	switch s.AddressPreference {
	case "any", "ipv4", "ipv6":
	default:
		return fmt.Errorf("smtp.address_preference must be any, ipv4 or ipv6, not %q", s.AddressPreference)
	}
	if strings.ContainsAny(s.HeloName, " \t\r\n\x00/<>") {
		return fmt.Errorf("smtp.helo_name %q is not a host name", s.HeloName)
	}
	if s.Relayhost != "" {
		if _, _, _, err := s.RelayhostParts(); err != nil {
			return err
		}
	}
	if s.RelayhostUsername != "" && (s.Relayhost == "" || s.RelayhostPasswordFile == "") {
		return fmt.Errorf("smtp.relayhost_username needs smtp.relayhost and smtp.relayhost_password_file")
	}
	return nil
}

// IsLocalDomain reports whether domain's recipients are system users.
func (c *Config) IsLocalDomain(domain string) bool {
	return contains(c.LocalDomains, domain)
}

// IsVirtualDomain reports whether domain's recipients are virtual users.
func (c *Config) IsVirtualDomain(domain string) bool {
	return contains(c.Virtual.Domains, domain)
}

func contains(list []string, domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range list {
		if d == domain {
			return true
		}
	}
	return false
}

// Duration is a time span written as Postfix writes them: a number with an
// optional unit s, m, h, d or w (seconds without a unit), or Go's "1h30m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// ParseDuration parses "300", "300s", "5m", "5d", "1w" or "1h30m".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour,
		'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	num, unit := s, time.Second
	if u, ok := units[s[len(s)-1]]; ok {
		num, unit = s[:len(s)-1], u
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 || n > int64(100*365*24*time.Hour/unit) {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(n) * unit, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("duration %q: want a number with unit s, m, h, d or w", s)
	}
	return v, nil
}
