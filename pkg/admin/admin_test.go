package admin

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command answers --help with its own usage lines and what it does,
// without needing a configuration.
func TestCommandHelp(t *testing.T) {
	for cmd := range helps {
		var out, errb bytes.Buffer
		code := Main([]string{"-c", "/nonexistent/posthorn.toml", cmd, "--help"}, Env{Stdout: &out, Stderr: &errb})
		if code != exitOK || !strings.Contains(out.String(), "posthorn [-c FILE] "+cmd) || errb.Len() != 0 {
			t.Errorf("%s --help: exit %d\n%s%s", cmd, code, out.String(), errb.String())
		}
	}
	var out bytes.Buffer
	if code := Main([]string{"queue", "delete", "-h"}, Env{Stdout: &out, Stderr: &out}); code != exitOK ||
		!strings.Contains(out.String(), "queue delete ID..") {
		t.Errorf("queue delete -h: %d %s", code, out.String())
	}
}

// check names a listening port another program holds, and what to do.
func TestCheckFindsPortConflict(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "posthorn.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("spool_directory = %q\n[imap]\nlisten = [%q]\nlisten_tls = []\n",
		filepath.Join(dir, "spool"), l.Addr().String())), 0644)
	var out, errb bytes.Buffer
	code := Main([]string{"-c", cfgFile, "check"}, Env{Stdout: &out, Stderr: &errb})
	if code == exitOK || !strings.Contains(errb.String(), "imap.listen: "+l.Addr().String()) ||
		!strings.Contains(errb.String(), "systemctl stop dovecot") {
		t.Fatalf("check with IMAP's port taken: exit %d\n%s", code, errb.String())
	}
}
