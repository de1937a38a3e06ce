package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/auth"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// build compiles the program into a temporary folder.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "auth")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestPAMConfigFlag(t *testing.T) {
	out, err := exec.Command(build(t), "-pam-config").Output()
	if err != nil || string(out) != auth.PAMConfig {
		t.Fatalf("-pam-config: %v\n%s", err, out)
	}
}

// TestStartedAsMasterStartsIt runs the program the way master does: -c
// FILE, the listener as an inherited descriptor named in POSTHORN_FDS,
// SIGTERM to stop.
func TestStartedAsMasterStartsIt(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	h, err := userdb.HashPassword("pw of alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(users, []byte("alice@example.org:"+h+"\n"), 0600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "posthorn.toml")
	body := "[virtual]\ndomains = [\"example.org\"]\nusers_file = \"users\"\n[auth]\nsystem_users = false\n"
	if err := os.WriteFile(conf, []byte(body), 0600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "auth.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	cmd := exec.Command(bin, "-c", conf)
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Env = append(os.Environ(), daemon.EnvFDs+"=auth:3")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("auth exited with %v\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("auth did not stop on SIGTERM")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := auth.NewClient(sock).Verify(ctx, auth.Request{
		Service: auth.ServiceIMAP, User: "alice@example.org", Password: "pw of alice", RemoteIP: "192.0.2.1", Secured: true,
	})
	if err != nil || !res.OK || res.User != "alice@example.org" {
		t.Fatalf("Verify: %+v %v\n%s", res, err, logs.String())
	}
}
