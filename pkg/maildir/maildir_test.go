package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// stopClock makes uniqueBase see the same instant on every call until the
// test ends.
func stopClock(t testing.TB, at time.Time) {
	clock.Lock()
	clock.now = func() time.Time { return at }
	clock.Unlock()
	t.Cleanup(func() {
		clock.Lock()
		clock.now = nil
		clock.Unlock()
	})
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func mustEmpty(t *testing.T, dir string) {
	t.Helper()
	if n := names(t, dir); len(n) != 0 {
		t.Fatalf("%s is not empty: %q", dir, n)
	}
}

func TestDeliverCreatesMaildirAndStoresMessage(t *testing.T) {
	root := filepath.Join(t.TempDir(), "home", "alice", "Maildir")
	w := NewWriter("mx.example.test")
	prefix := []byte("Return-Path: <bob@example.org>\nDelivered-To: alice@example.test\n")
	body := "Subject: hi\n\nline one\nline two\n"

	name, err := w.Deliver(root, prefix, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", Cur, New, Tmp} {
		fi, err := os.Lstat(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0700 {
			t.Errorf("%s/%s: mode %v, want directory 0700", root, sub, fi.Mode())
		}
	}
	want := string(prefix) + body
	got, err := os.ReadFile(filepath.Join(root, New, name))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("content %q, want %q", got, want)
	}
	fi, _ := os.Stat(filepath.Join(root, New, name))
	if fi.Mode().Perm() != 0600 {
		t.Errorf("message mode %v, want 0600", fi.Mode())
	}
	re := regexp.MustCompile(`^\d+\.M\d+P` + fmt.Sprint(os.Getpid()) + `\.mx\.example\.test,S=\d+,W=\d+$`)
	if !re.MatchString(name) {
		t.Errorf("name %q does not have Dovecot's form", name)
	}
	base, size, vsize, flags, ok := ParseName(name)
	if !ok || flags != "" || !strings.HasSuffix(base, ".mx.example.test") {
		t.Fatalf("ParseName(%q) = %q %d %d %q %v", name, base, size, vsize, flags, ok)
	}
	lf := int64(strings.Count(want, "\n"))
	if size != int64(len(want)) || vsize != int64(len(want))+lf {
		t.Errorf("S=%d W=%d, want S=%d W=%d", size, vsize, len(want), int64(len(want))+lf)
	}
	mustEmpty(t, filepath.Join(root, Tmp))
	mustEmpty(t, filepath.Join(root, Cur))
}

func TestDeliverLargePrefixAndBody(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	prefix := bytes.Repeat([]byte("X-Long: 0123456789\n"), 5000) // > one buffer
	body := strings.Repeat("a line of body text\n", 20000)
	name, err := NewWriter("h").Deliver(root, prefix, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, New, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(prefix, body...)) {
		t.Fatal("content differs")
	}
	_, size, vsize, _, _ := ParseName(name)
	lf := int64(bytes.Count(got, []byte("\n")))
	if size != int64(len(got)) || vsize != size+lf {
		t.Fatalf("S=%d W=%d for %d bytes and %d lines", size, vsize, len(got), lf)
	}
}

func TestDeliverEmptyMessage(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	name, err := NewWriter("h").Deliver(root, nil, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, ",S=0,W=0") {
		t.Fatalf("name %q", name)
	}
}

func TestConcurrentDeliveriesGetUniqueNames(t *testing.T) {
	// A stopped clock is the worst case: every name comes from the bump.
	stopClock(t, time.Unix(1700000000, 999990000))
	root := filepath.Join(t.TempDir(), "Maildir")
	w := NewWriter("h")
	w2 := NewWriter("h") // a second Writer in the same process shares the clock
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ww := w
			if g%2 == 1 {
				ww = w2
			}
			for i := 0; i < 10; i++ {
				name, err := ww.Deliver(root, nil, strings.NewReader("x\n"))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[name] {
					t.Errorf("duplicate name %s", name)
				}
				seen[name] = true
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	if n := len(names(t, filepath.Join(root, New))); n != 500 {
		t.Fatalf("%d files in new/, want 500", n)
	}
}

func TestUniqueBaseBumpsStalledAndBackwardClock(t *testing.T) {
	stopClock(t, time.Unix(1700000000, 999999000))
	clock.Lock()
	clock.sec, clock.usec = 0, 0
	clock.Unlock()
	p := fmt.Sprint(os.Getpid())
	want := []string{
		"1700000000.M999999P" + p + ".h",
		"1700000001.M0P" + p + ".h", // the usec carried into the seconds
		"1700000001.M1P" + p + ".h",
	}
	for _, w := range want {
		if got := uniqueBase("h"); got != w {
			t.Fatalf("uniqueBase = %q, want %q", got, w)
		}
	}
	// The clock went back a minute: names keep increasing instead.
	stopClock(t, time.Unix(1699999940, 0))
	if got := uniqueBase("h"); got != "1700000001.M2P"+p+".h" {
		t.Fatalf("after the clock went back: %q", got)
	}
}

func TestHostnameSlashColonCommaEscaped(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	name, err := NewWriter("evil/../x:2,S,").Deliver(root, nil, strings.NewReader("x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(name, `.evil\057..\057x\0722\054S\054,S=2,W=3`) {
		t.Fatalf("name %q", name)
	}
	if n := names(t, filepath.Join(root, New)); len(n) != 1 || n[0] != name {
		t.Fatalf("new/ holds %q", n)
	}
	base, size, vsize, flags, ok := ParseName(name)
	if !ok || size != 2 || vsize != 3 || flags != "" || strings.Contains(base, ",") {
		t.Fatalf("ParseName(%q) = %q %d %d %q %v", name, base, size, vsize, flags, ok)
	}
}

func TestNewWriterDefaultsHostname(t *testing.T) {
	if NewWriter("").Hostname == "" {
		t.Fatal("empty hostname")
	}
}

// hostile prepares a Maildir and an outside folder an attacker wants us to
// write into.
func hostile(t *testing.T) (root, outside string) {
	dir := t.TempDir()
	root = filepath.Join(dir, "Maildir")
	outside = filepath.Join(dir, "etc")
	for _, d := range []string{outside, filepath.Join(root, Cur)} {
		if err := os.MkdirAll(d, 0700); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestSymlinkedRootRefused(t *testing.T) {
	root, outside := hostile(t)
	link := filepath.Join(filepath.Dir(root), "Linked")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	_, err := NewWriter("h").Deliver(link, nil, strings.NewReader("x\n"))
	if err == nil || !strings.Contains(err.Error(), "not a directory but a symlink") {
		t.Fatalf("err = %v", err)
	}
	mustEmpty(t, outside)
}

func TestSymlinkedNewOrTmpRefused(t *testing.T) {
	for _, sub := range []string{New, Tmp} {
		for _, target := range []string{"ABS", "../etc", Cur} {
			t.Run(sub+"->"+target, func(t *testing.T) {
				root, outside := hostile(t)
				other := New
				if sub == New {
					other = Tmp
				}
				os.Mkdir(filepath.Join(root, other), 0700)
				if target == "ABS" {
					target = outside
				}
				if err := os.Symlink(target, filepath.Join(root, sub)); err != nil {
					t.Fatal(err)
				}
				_, err := NewWriter("h").Deliver(root, nil, strings.NewReader("x\n"))
				if err == nil || !strings.Contains(err.Error(), sub+"/") {
					t.Fatalf("err = %v", err)
				}
				mustEmpty(t, outside)
				mustEmpty(t, filepath.Join(root, Cur))
				mustEmpty(t, filepath.Join(root, other))
			})
		}
	}
}

func TestRootOrSubfolderNotADirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0600)
	if _, err := NewWriter("h").Deliver(file, nil, strings.NewReader("x")); err == nil {
		t.Fatal("delivered into a regular file")
	}
	root := filepath.Join(dir, "Maildir")
	os.Mkdir(root, 0700)
	os.WriteFile(filepath.Join(root, New), nil, 0600)
	_, err := NewWriter("h").Deliver(root, nil, strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), "new/: not a directory but a file") {
		t.Fatalf("err = %v", err)
	}
}

func TestPrecreatedTmpNameIsSkipped(t *testing.T) {
	stopClock(t, time.Unix(1700000000, 0))
	clock.Lock()
	clock.sec, clock.usec = 1700000000, 10
	clock.Unlock()
	root, outside := hostile(t)
	for _, d := range []string{New, Tmp} {
		os.Mkdir(filepath.Join(root, d), 0700)
	}
	victim := filepath.Join(outside, "passwd")
	os.WriteFile(victim, []byte("root:x:0:0\n"), 0600)
	p := fmt.Sprint(os.Getpid())
	// The next two names an attacker can predict: a symlink to a file
	// outside, and a hard link to it.
	n11 := filepath.Join(root, Tmp, "1700000000.M11P"+p+".h")
	n12 := filepath.Join(root, Tmp, "1700000000.M12P"+p+".h")
	if err := os.Symlink(victim, n11); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, n12); err != nil {
		t.Fatal(err)
	}
	name, err := NewWriter("h").Deliver(root, nil, strings.NewReader("evil\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "1700000000.M13P"+p+".h,") {
		t.Fatalf("name %q, want the third candidate", name)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:x:0:0\n" {
		t.Fatalf("victim changed: %q", b)
	}
	if fi, err := os.Lstat(n11); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Fatalf("pre-created symlink disturbed: %v %v", fi, err)
	}
}

func TestPrecreatedTmpNamesExhaustRetries(t *testing.T) {
	stopClock(t, time.Unix(1700000000, 0))
	clock.Lock()
	clock.sec, clock.usec = 1700000000, 0
	clock.Unlock()
	root := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{New, Tmp, Cur} {
		os.MkdirAll(filepath.Join(root, d), 0700)
	}
	p := fmt.Sprint(os.Getpid())
	for u := 1; u <= maxCreateAttempts; u++ {
		os.WriteFile(filepath.Join(root, Tmp, fmt.Sprintf("1700000000.M%dP%s.h", u, p)), nil, 0600)
	}
	_, err := NewWriter("h").Deliver(root, nil, strings.NewReader("x\n"))
	if err == nil || !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "create tmp file") {
		t.Fatalf("err = %v", err)
	}
	if n := len(names(t, filepath.Join(root, Tmp))); n != maxCreateAttempts {
		t.Fatalf("tmp/ holds %d files", n)
	}
	mustEmpty(t, filepath.Join(root, New))
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadErrorRemovesTmpFile(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	boom := errors.New("spool file vanished")
	body := &failingReader{data: bytes.Repeat([]byte("x\n"), 100000), err: boom}
	w := NewWriter("h")
	_, err := w.Deliver(root, []byte("P: 1\n"), body)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "write") {
		t.Fatalf("err = %v", err)
	}
	mustEmpty(t, filepath.Join(root, Tmp))
	mustEmpty(t, filepath.Join(root, New))
	// The failed delivery no longer counts as under way, or every later
	// fsync of new/ would wait for it.
	if n := w.syncs.Syncer(filepath.Join(root, New)).UnderWay(); n != 0 {
		t.Fatalf("%d deliveries under way after a failed one", n)
	}
}

func TestPermissionErrorIsReported(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permissions")
	}
	root := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{New, Tmp, Cur} {
		os.MkdirAll(filepath.Join(root, d), 0700)
	}
	os.Chmod(filepath.Join(root, Tmp), 0500)
	defer os.Chmod(filepath.Join(root, Tmp), 0700)
	_, err := NewWriter("h").Deliver(root, nil, strings.NewReader("x\n"))
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "create tmp file") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseName(t *testing.T) {
	long := strings.Repeat("a", 250)
	cases := []struct {
		name        string
		base        string
		size, vsize int64
		flags       string
		ok          bool
	}{
		{"1276528487.M364837P9451.kurkku,S=1355,W=1394:2,", "1276528487.M364837P9451.kurkku", 1355, 1394, "", true},
		{"1276528487.M364837P9451.kurkku,S=1355,W=1394:2,FRSa", "1276528487.M364837P9451.kurkku", 1355, 1394, "FRSa", true},
		{"1276528487.M364837P9451.kurkku,S=1355,W=1394", "1276528487.M364837P9451.kurkku", 1355, 1394, "", true},
		{"1276528487.M364837P9451.kurkku", "1276528487.M364837P9451.kurkku", -1, -1, "", true},
		{"123.V801I2M3.host:2,S", "123.V801I2M3.host", -1, -1, "S", true}, // Postfix's names
		{"b,W=5,S=4,X=junk:2,S,kept", "b", 4, 5, "S", true},
		{"b:2,", "b", -1, -1, "", true},
		{"", "", -1, -1, "", false},
		{".hidden", "", -1, -1, "", false},
		{"a/b", "", -1, -1, "", false},
		{"a\x00b", "", -1, -1, "", false},
		{"a\nb", "", -1, -1, "", false},
		{"a\xffb", "", -1, -1, "", false},
		{"b:1,S", "", -1, -1, "", false},
		{"b:2,S!", "", -1, -1, "", false},
		{"b:", "", -1, -1, "", false},
		{",S=1", "", -1, -1, "", false},
		{"b,S=1,S=2", "", -1, -1, "", false},
		{"b,S=", "", -1, -1, "", false},
		{"b,S=-1", "", -1, -1, "", false},
		{"b,S=1x", "", -1, -1, "", false},
		{"b,S=99999999999999999999", "", -1, -1, "", false},
		{"b,S=999999999999999999", "b", 999999999999999999, -1, "", true},
		{long + ":2,S", long, -1, -1, "S", true},
		{long + ":2,Sxyz", "", -1, -1, "", false}, // 256 bytes
		{"b:2," + strings.Repeat("S", 300), "", -1, -1, "", false},
	}
	for _, c := range cases {
		base, size, vsize, flags, ok := ParseName(c.name)
		if base != c.base || size != c.size || vsize != c.vsize || flags != c.flags || ok != c.ok {
			t.Errorf("ParseName(%q) = %q %d %d %q %v, want %q %d %d %q %v", c.name,
				base, size, vsize, flags, ok, c.base, c.size, c.vsize, c.flags, c.ok)
		}
	}
}

func FuzzParseName(f *testing.F) {
	f.Add("1276528487.M364837P9451.kurkku,S=1355,W=1394:2,FRS")
	f.Fuzz(func(t *testing.T, name string) {
		base, size, vsize, flags, ok := ParseName(name)
		if !ok {
			if base != "" || size != -1 || vsize != -1 || flags != "" {
				t.Fatalf("rejected name returned values: %q %d %d %q", base, size, vsize, flags)
			}
			return
		}
		if base == "" || base[0] == '.' || strings.ContainsAny(base, "/,:") || len(name) > 255 {
			t.Fatalf("accepted unsafe name %q (base %q)", name, base)
		}
		if size < -1 || vsize < -1 || strings.ContainsAny(flags, ":,/") {
			t.Fatalf("bad values for %q: %d %d %q", name, size, vsize, flags)
		}
		if !strings.HasPrefix(name, base) {
			t.Fatalf("base %q is not a prefix of %q", base, name)
		}
	})
}

func BenchmarkDeliver(b *testing.B) {
	msg := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit\n"), 5*1024/57)
	prefix := []byte("Return-Path: <a@example.org>\nDelivered-To: b@example.test\n")
	for _, maildirs := range []int{1, 16} {
		b.Run(fmt.Sprintf("maildirs=%d", maildirs), func(b *testing.B) {
			dir := b.TempDir()
			roots := make([]string, maildirs)
			for i := range roots {
				roots[i] = filepath.Join(dir, fmt.Sprint(i), "Maildir")
			}
			w := NewWriter("bench.example.test")
			var next atomic.Int64
			b.SetBytes(int64(len(prefix) + len(msg)))
			b.SetParallelism(16) // deliveries wait on the disk, not the CPU
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					root := roots[next.Add(1)%int64(maildirs)]
					if _, err := w.Deliver(root, prefix, bytes.NewReader(msg)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestDiskFullIsReported needs a small file system; set
// POSTHORN_TEST_SMALLFS to a folder on one (mount -t tmpfs -o size=64k).
func TestDiskFullIsReported(t *testing.T) {
	dir := os.Getenv("POSTHORN_TEST_SMALLFS")
	if dir == "" {
		t.Skip("POSTHORN_TEST_SMALLFS not set")
	}
	root := filepath.Join(dir, fmt.Sprint("Maildir", os.Getpid()))
	defer os.RemoveAll(root)
	_, err := NewWriter("h").Deliver(root, nil, bytes.NewReader(make([]byte, 1<<20)))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	mustEmpty(t, filepath.Join(root, Tmp))
	mustEmpty(t, filepath.Join(root, New))
}
