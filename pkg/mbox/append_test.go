package mbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// The test binary doubles as a program that holds a classic fcntl lock
// (the kind mutt, mail(1) and Dovecot take) until its standard input
// closes: MBOX_TEST_HOLD_LOCK=path.
func TestMain(m *testing.M) {
	if path := os.Getenv("MBOX_TEST_HOLD_LOCK"); path != "" {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdLock starts a process that holds a classic fcntl lock on path and
// returns a function that makes it release the lock and exit.
func holdLock(t *testing.T, path string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MBOX_TEST_HOLD_LOCK="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("lock holder: %q", line)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	t.Cleanup(release)
	return release
}

func delivery(path string) Delivery {
	return Delivery{Path: path, Sender: "s@x", Time: when, Prefix: []byte("Delivered-To: u@x\n"),
		Mode: 0600, Group: -1, Owner: -1, LockTimeout: 5 * time.Second}
}

func readBack(t *testing.T, path string) []*Message {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestAppendCreatesAndAppends(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice")
	d := delivery(path)
	d.Mode = 0660
	for i := 0; i < 3; i++ {
		if _, err := Append(d, strings.NewReader(fmt.Sprintf("Subject: %d\n\nFrom body\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0660 {
		t.Errorf("mode %v, want 0660 whatever the umask", fi.Mode().Perm())
	}
	ms := readBack(t, path)
	if len(ms) != 3 {
		t.Fatalf("%d messages", len(ms))
	}
	for i, m := range ms {
		if want := fmt.Sprintf("Delivered-To: u@x\nSubject: %d\n\nFrom body\n", i); string(m.Content) != want {
			t.Errorf("message %d: %q", i, m.Content)
		}
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "\n>From body\n\nFrom s@x ") {
		t.Errorf("file:\n%s", raw)
	}
	if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dotlock left behind: %v", err)
	}
}

func TestAppendRefusesUnsafeFiles(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("precious\n"), 0600)

	link := filepath.Join(dir, "link")
	os.Symlink(other, link)
	hard := filepath.Join(dir, "hard")
	os.Link(other, hard)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0700)
	exe := filepath.Join(dir, "exe")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0700)

	for _, c := range []struct {
		path string
		want error
		tune func(*Delivery)
	}{
		{link, ErrSymlink, nil},
		{hard, ErrHardLinks, nil},
		{fifo, ErrNotRegular, nil},
		{sub, ErrNotRegular, nil},
		{exe, ErrExecutable, func(d *Delivery) { d.NoExec = true }},
		{filepath.Join(dir, "mine"), ErrOwner, func(d *Delivery) {
			os.WriteFile(filepath.Join(dir, "mine"), nil, 0600)
			d.Owner = os.Getuid() + 1
		}},
	} {
		d := delivery(c.path)
		if c.tune != nil {
			c.tune(&d)
		}
		_, err := Append(d, strings.NewReader("x\n"))
		if !errors.Is(err, c.want) || !Unacceptable(err) {
			t.Errorf("%s: %v, want %v", filepath.Base(c.path), err, c.want)
		}
	}
	if b, _ := os.ReadFile(other); string(b) != "precious\n" {
		t.Errorf("the linked file changed: %q", b)
	}
	// Without NoExec an executable file is just a file.
	if _, err := Append(delivery(exe), strings.NewReader("x\n")); err != nil {
		t.Errorf("executable without NoExec: %v", err)
	}
}

func TestAppendTruncatesOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box")
	if _, err := Append(delivery(path), strings.NewReader("first\n")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	// The message fails after 200 KB have gone to the file.
	msg := io.MultiReader(strings.NewReader(strings.Repeat("line\n", 40000)), iotest.ErrReader(errors.New("queue file read error")))
	if _, err := Append(delivery(path), msg); err == nil || !strings.Contains(err.Error(), "queue file read error") {
		t.Fatalf("err = %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Fatalf("mailbox grew from %d to %d bytes after a failed delivery", len(before), len(after))
	}
}

func TestAppendWaitsForOtherProgramsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box")
	os.WriteFile(path, nil, 0600)
	release := holdLock(t, path)
	d := delivery(path)
	d.LockTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := Append(d, strings.NewReader("x\n"))
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), "fcntl lock") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", el)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Errorf("wrote %d bytes without the lock", fi.Size())
	}
	if _, err := os.Lstat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dotlock was created without the fcntl lock: %v", err)
	}
	release()
	if _, err := Append(d, strings.NewReader("x\n")); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestDotlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "box")
	lock := path + ".lock"
	os.WriteFile(lock, []byte("4711\n"), 0644)
	d := delivery(path)
	d.LockTimeout = 200 * time.Millisecond
	if _, err := Append(d, strings.NewReader("x\n")); !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), "dotlock") {
		t.Fatalf("fresh dotlock: %v", err)
	}
	// The fcntl lock was given back: another program can take it.
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Errorf("fcntl lock kept after the dotlock timed out: %v", err)
	}
	f.Close()

	// Just younger than StaleLockAge: still honoured.
	young := time.Now().Add(-StaleLockAge + time.Minute)
	os.Chtimes(lock, young, young)
	if _, err := Append(d, strings.NewReader("x\n")); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("young dotlock: %v", err)
	}
	// Older: left by a dead program, removed.
	old := time.Now().Add(-StaleLockAge - time.Second)
	os.Chtimes(lock, old, old)
	if _, err := Append(d, strings.NewReader("x\n")); err != nil {
		t.Fatalf("stale dotlock: %v", err)
	}
	if _, err := os.Lstat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dotlock left: %v", err)
	}
	if ms := readBack(t, path); len(ms) != 1 {
		t.Errorf("%d messages", len(ms))
	}
}

func TestDotlockThatCannotBeCreated(t *testing.T) {
	// A name whose ".lock" is one byte too long for the file system:
	// creating the dotlock fails for root too.
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("m", 251))
	d := delivery(path)
	if _, err := Append(d, strings.NewReader("x\n")); err == nil || !strings.Contains(err.Error(), "dotlock") {
		t.Fatalf("required dotlock: %v", err)
	}
	d.Dotlock = DotlockMayFail
	if _, err := Append(d, strings.NewReader("x\n")); err != nil {
		t.Fatalf("dotlock that may fail: %v", err)
	}
}

// TestConcurrentAppends runs deliveries from many goroutines of one
// process, as a delivery worker does: the locks belong to each open file,
// so they exclude each other and every message arrives whole.
func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("Subject: %d-%d\n\n%s", w, i, strings.Repeat(fmt.Sprintf("From %d-%d\n", w, i), 500))
				if _, err := Append(delivery(path), strings.NewReader(body)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ms := readBack(t, path)
	if len(ms) != writers*each {
		t.Fatalf("%d messages, want %d", len(ms), writers*each)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		var w, i int
		if _, err := fmt.Sscanf(string(m.Content), "Delivered-To: u@x\nSubject: %d-%d\n", &w, &i); err != nil {
			t.Fatalf("message %q...: %v", m.Content[:40], err)
		}
		want := fmt.Sprintf("Delivered-To: u@x\nSubject: %d-%d\n\n%s", w, i, strings.Repeat(fmt.Sprintf("From %d-%d\n", w, i), 500))
		if string(m.Content) != want {
			t.Fatalf("message %d-%d is damaged", w, i)
		}
		seen[fmt.Sprint(w, i)] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct messages", len(seen))
	}
}
