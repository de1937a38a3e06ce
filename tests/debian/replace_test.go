package debian

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/config"
)

// testReplace installs Postfix and Dovecot (offline, from the root's apt
// cache), configures them as a server with local and virtual domains is
// configured, starts them, and replaces them with install.sh --replace.
func testReplace(t *testing.T, c *chroot, deb string) {
	c.must(`printf 'postfix postfix/main_mailer_type select Internet Site\npostfix postfix/mailname string ` + hostname + `\n' | debconf-set-selections`)
	c.must("apt-get install -y --no-download --no-install-recommends " + strings.Join(replacePackages, " "))
	c.must(`postconf -e 'myhostname = mail.example.test' 'mydestination = $myhostname, localhost, other.example' ` +
		`'relayhost = [smtp.example.net]:587' 'virtual_mailbox_domains = vhost.example' 'home_mailbox = Maildir/' ` +
		`'mynetworks = 127.0.0.0/8 [::1]/128 192.0.2.0/24' 'message_size_limit = 20480000'`)
	hash := strings.TrimSpace(c.must("doveadm pw -s SHA512-CRYPT -p secret"))
	if err := os.WriteFile(c.path("/etc/dovecot/users"), []byte("bob@vhost.example:"+hash+"::::::\n"), 0640); err != nil {
		t.Fatal(err)
	}
	// Dovecot's main file includes local.conf last; this passdb comes after
	// Debian's default PAM one.
	err := os.WriteFile(c.path("/etc/dovecot/local.conf"), []byte(`passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=/var/vmail/%d/%n
}
`), 0644)
	if err != nil {
		t.Fatal(err)
	}
	c.must("postfix status >/dev/null 2>&1 || postfix start </dev/null >/dev/null 2>&1")
	c.must("test -f /run/dovecot/master.pid && kill -0 $(cat /run/dovecot/master.pid) || dovecot </dev/null >/dev/null 2>&1")
	c.must("postfix status && kill -0 $(cat /run/dovecot/master.pid)")

	// Without --replace, install.sh leaves them alone.
	out, err := c.sh("sh /root/posthorn/install.sh --deb " + deb)
	if err == nil || !strings.Contains(out, "install.sh --replace") {
		t.Fatalf("install.sh without --replace on a Postfix host: %v\n%s", err, out)
	}
	if st := status(c, "postfix"); st != "install ok installed" {
		t.Fatalf("install.sh without --replace changed postfix: %q", st)
	}

	out = c.must("sh /root/posthorn/install.sh --replace --deb " + deb)
	t.Logf("install.sh --replace:\n%s", tail([]byte(out), 40))
	t.Logf("/etc/posthorn/posthorn.toml:\n%s", c.read("/etc/posthorn/posthorn.toml"))

	cfg, err := config.Load(c.path("/etc/posthorn/posthorn.toml"))
	if err != nil {
		t.Fatalf("the imported configuration does not load: %v", err)
	}
	for what, got := range map[string][2]any{
		"hostname (myhostname)":                    {cfg.Hostname, "mail.example.test"},
		"local_domains (mydestination)":            {cfg.LocalDomains, []string{"mail.example.test", "localhost", "other.example"}},
		"virtual.domains":                          {cfg.Virtual.Domains, []string{"vhost.example"}},
		"virtual.users_file (Dovecot passwd-file)": {cfg.Virtual.UsersFile, "/etc/dovecot/users"},
		"auth.passwd_files":                        {cfg.Auth.PasswdFiles, []string{}},
		"local.home_mailbox":                       {cfg.Local.HomeMailbox, "Maildir/"},
		"smtp.relayhost":                           {cfg.SMTP.Relayhost, "[smtp.example.net]:587"},
		"smtpd.relay_networks (mynetworks)":        {cfg.SMTPD.RelayNetworks, []string{"127.0.0.0/8", "::1/128", "192.0.2.0/24"}},
		// Postfix had Debian's self-signed certificate: Dovecot's is taken.
		"tls.cert_file": {cfg.TLS.CertFile, "/etc/dovecot/private/dovecot.pem"},
		"tls.key_file":  {cfg.TLS.KeyFile, "/etc/dovecot/private/dovecot.key"},
	} {
		if !reflect.DeepEqual(got[0], got[1]) {
			t.Errorf("%s: %#v, want %#v", what, got[0], got[1])
		}
	}
	if conf := c.read("/etc/posthorn/posthorn.toml"); !strings.Contains(conf, "#   smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)") {
		t.Errorf("the settings that were not imported are not listed in the configuration:\n%s", conf)
	}

	// Postfix is gone (its configuration stays, as apt leaves it), Dovecot
	// is stopped and disabled.
	if st := status(c, "postfix"); st != "deinstall ok config-files" {
		t.Errorf("postfix: status %q, want removed", st)
	}
	if st := status(c, "posthorn"); st != "install ok installed" {
		t.Errorf("posthorn: status %q", st)
	}
	// (The namespace's first process reaps no orphans: a stopped daemon
	// stays a zombie, which does not count.)
	if ps := c.must(`for d in /proc/[0-9]*; do grep -qx 'Name:[[:space:]]*dovecot' $d/status 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' $d/status && echo $d; done; true`); ps != "" {
		t.Errorf("dovecot still runs: %s", ps)
	}
	if out := c.must("ls /etc/rc2.d"); strings.Contains(out, "S01dovecot") || !strings.Contains(out, "dovecot") {
		t.Errorf("dovecot is not disabled in /etc/rc2.d: %s", out)
	}
	c.must("posthorn check")

	// Mail goes where Postfix and Dovecot put it.
	m := startMaster(t, c)
	// (--uninstall took bsd-mailx along: sendmail itself.)
	c.must(`printf 'Subject: posthorn replaced postfix\n\nafter the switch\n' | sendmail root`)
	c.must(`printf 'Subject: to a virtual user\n\nhello bob\n' | sendmail bob@vhost.example`)
	waitFor(t, "mail for root in ~/Maildir and for bob in /var/vmail", deliveryWait, m, func() bool {
		return strings.Contains(mailbox(c, "/root/Maildir"), "Subject: posthorn replaced postfix") &&
			strings.Contains(mailbox(c, "/var/vmail/vhost.example/bob/Maildir"), "hello bob")
	})
	m.stop(t, c)
}
