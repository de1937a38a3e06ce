// Package debian tests posthorn's installation on a real Debian 12 system:
// a root file system made with debootstrap, where install.sh installs the
// package that make deb builds and Debian's own programs use it: mail(1)
// from bsd-mailx, cron's way of calling sendmail, mailq, newaliases,
// pflogsumm and systemd-analyze.
//
// The root is built once and cached as a tar file under
// /var/cache/posthorn-test; every run unpacks a fresh copy. Commands run
// in it through chroot, in namespaces of their own (mount, PID, UTS and
// network): /proc, /dev and /run are mounted only there and vanish with
// the namespaces, the network has nothing but loopback, and no process
// survives the test.
package debian

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	suite    = "bookworm"
	cacheDir = "/var/cache/posthorn-test"
	// cacheTar holds the root; cacheTar+".key" says what it was built with,
	// and a root built with anything else is built again.
	cacheTar = cacheDir + "/bookworm-chroot.tar"
	hostname = "testhost"
	// pathEnv is the PATH of a root login shell on Debian.
	pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// basePackages are installed in the root besides debootstrap's minimal
// set: Debian's default MTA (Exim), which posthorn's package must replace,
// the programs that need an MTA and must stay installed, and the tools the
// test uses as an administrator would.
var basePackages = []string{"exim4-daemon-light", "bsd-mailx", "cron", "ssl-cert", "pflogsumm", "systemd", "man-db"}

// replacePackages are only downloaded into the root's apt cache: the
// --replace test installs them without network.
var replacePackages = []string{"postfix", "dovecot-imapd"}

func cacheKey() string {
	return fmt.Sprintf("v1 %s minbase include=%s download=%s\n", suite,
		strings.Join(basePackages, ","), strings.Join(replacePackages, ","))
}

// requireTools fails the test when a host program the test needs is
// missing, naming the package that brings it.
func requireTools(t *testing.T) {
	t.Helper()
	for prog, pkg := range map[string]string{"debootstrap": "debootstrap", "unshare": "util-linux",
		"nsenter": "util-linux", "tar": "tar", "ip": "iproute2", "dpkg-deb": "dpkg", "objdump": "binutils", "gcc": "gcc"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s is not installed: make test installs what the tests need (as root), or apt-get install %s", prog, pkg)
		}
	}
}

// debianMirror finds the Debian archive apt uses on this machine, in
// /etc/apt/sources.list and /etc/apt/sources.list.d/*.list and *.sources:
// the first one that serves the suite, else the first Debian archive.
func debianMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	sources, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(append([]string{"/etc/apt/sources.list"}, files...), sources...)
	type entry struct{ uri, suites string }
	var entries []entry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			// deb822: stanzas of "Key: value" separated by blank lines.
			for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(string(b), -1) {
				fields := map[string]string{}
				for _, line := range strings.Split(stanza, "\n") {
					if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
						fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
					}
				}
				if !strings.Contains(" "+fields["types"]+" ", " deb ") || strings.EqualFold(fields["enabled"], "no") {
					continue
				}
				for _, u := range strings.Fields(fields["uris"]) {
					entries = append(entries, entry{u, " " + fields["suites"] + " "})
				}
			}
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			w := strings.Fields(line)
			if len(w) < 3 || w[0] != "deb" {
				continue
			}
			w = w[1:]
			if strings.HasPrefix(w[0], "[") { // [arch=amd64 signed-by=...]
				for len(w) > 0 && !strings.HasSuffix(w[0], "]") {
					w = w[1:]
				}
				w = w[1:]
			}
			if len(w) >= 2 {
				entries = append(entries, entry{w[0], " " + w[1] + " "})
			}
		}
	}
	for _, e := range entries {
		if strings.Contains(e.suites, " "+suite+" ") {
			return e.uri, nil
		}
	}
	for _, e := range entries {
		if strings.HasSuffix(strings.TrimSuffix(e.uri, "/"), "/debian") {
			return e.uri, nil
		}
	}
	return "", fmt.Errorf("no Debian archive in /etc/apt/sources.list*")
}

// run runs a host command and fails the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 60))
	}
	return string(out)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"[...]"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// prepareRoot returns a fresh Debian root in a temporary folder: the
// cached one unpacked, built first when there is none (or it was built
// with another package list).
func prepareRoot(t *testing.T) string {
	t.Helper()
	key, _ := os.ReadFile(cacheTar + ".key")
	if _, err := os.Stat(cacheTar); err != nil || string(key) != cacheKey() {
		start := time.Now()
		buildCache(t)
		t.Logf("built the Debian root and cached it as %s in %s", cacheTar, time.Since(start).Round(time.Second))
	}
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run(t, "tar", "-C", dir, "--numeric-owner", "-xpf", cacheTar)
	t.Logf("unpacked %s in %s", cacheTar, time.Since(start).Round(time.Millisecond))
	return dir
}

// buildCache makes the root with debootstrap from this machine's Debian
// mirror, downloads the packages of the --replace test into its apt cache,
// and stores it as cacheTar. Only a finished root replaces the cache.
func buildCache(t *testing.T) {
	mirror, err := debianMirror()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cacheDir, 0755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(cacheDir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	// In a mount namespace of its own: whatever debootstrap mounts in the
	// root goes away with it, even if it is killed.
	t.Logf("debootstrap %s from %s (cached for later runs)", suite, mirror)
	run(t, "unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
		"--include="+strings.Join(basePackages, ","), suite, root, mirror)
	c := enter(t, root, false)
	c.must("apt-get install --download-only -y --no-install-recommends " + strings.Join(replacePackages, " "))
	c.close()
	tmp := fmt.Sprintf("%s.%d.tmp", cacheTar, os.Getpid()) // another test run may build one too
	defer os.Remove(tmp)
	run(t, "tar", "-C", root, "--numeric-owner", "-cf", tmp, ".")
	if err := os.Rename(tmp, cacheTar); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cacheTar+".key", []byte(cacheKey()), 0644); err != nil {
		t.Fatal(err)
	}
}

// chroot is a Debian root with namespaces to run commands in.
type chroot struct {
	t       *testing.T
	dir     string
	holder  *exec.Cmd
	release io.Closer
	pid     int // the first process in the namespaces, as the host sees it
	once    sync.Once
}

// enter starts the namespaces for the root at dir. isolated adds a network
// namespace with only loopback; without it the root uses the host's
// network (to download packages).
func enter(t *testing.T, dir string, isolated bool) *chroot {
	t.Helper()
	args := []string{"--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation", "private"}
	net := ""
	if isolated {
		args = append(args, "--net")
		net = "ip link set lo up"
	}
	// The holder mounts what programs expect, then waits, chrooted, for its
	// standard input to close: the test's end, or the test process's death.
	script := fmt.Sprintf(`set -e
root=$1
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/lock"
echo %s >/proc/sys/kernel/hostname
%s
exec chroot "$root" /bin/sh -c 'echo ready; read x'
`, hostname, net)
	cmd := exec.Command("unshare", append(args, "sh", "-c", script, "sh", dir)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	c := &chroot{t: t, dir: dir, holder: cmd, release: stdin}
	t.Cleanup(c.close)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		cmd.Wait()
		t.Fatalf("setting up the namespaces for %s: %v %q\n%s", dir, err, line, stderr.String())
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if c.pid, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		t.Fatalf("the process holding the namespaces: %q", children)
	}
	return c
}

// close ends every process in the namespaces; the mounts go with them.
func (c *chroot) close() {
	c.once.Do(func() {
		c.release.Close()
		c.holder.Wait()
	})
}

// command returns a command running script with /bin/sh in the root as
// root, with a root login's environment and extra variables.
func (c *chroot) command(script string, env ...string) *exec.Cmd {
	args := []string{"-t", strconv.Itoa(c.pid), "-a", "-r", "-w", "--", "/usr/bin/env", "-i", pathEnv,
		"HOME=/root", "LANG=C.UTF-8", "LOGNAME=root", "USER=root", "DEBIAN_FRONTEND=noninteractive"}
	args = append(args, env...)
	cmd := exec.Command("nsenter", append(args, "/bin/sh", "-c", script)...)
	// A daemon the script started may hold its output open; the script's
	// end is what counts.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// commandTimeout bounds one command in the root (apt installing packages
// is the slowest).
const commandTimeout = 5 * time.Minute

// sh runs script in the root and returns its output and error.
func (c *chroot) sh(script string) (string, error) {
	cmd := c.command(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	timer := time.AfterFunc(commandTimeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		err = fmt.Errorf("killed after %s: %v", commandTimeout, err)
	}
	return out.String(), err
}

// must runs script in the root and fails the test when it fails.
func (c *chroot) must(script string) string {
	c.t.Helper()
	out, err := c.sh(script)
	if err != nil {
		c.t.Fatalf("in the root: %s: %v\n%s", script, err, tail([]byte(out), 80))
	}
	return out
}

// path is a path in the root as the host sees it.
func (c *chroot) path(p string) string { return filepath.Join(c.dir, p) }

// read returns a file of the root, "" when it does not exist.
func (c *chroot) read(p string) string {
	b, _ := os.ReadFile(c.path(p))
	return string(b)
}
