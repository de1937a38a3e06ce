package config

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// manDir is the repository's man/ folder, seen from this package.
const manDir = "../../man"

// tomlKeys walks t by reflection and returns every TOML key it decodes,
// dotted below the top level (smtpd.recipient_limit). A struct field that
// is not a TOML leaf value (Duration is one, through UnmarshalText) is a
// table whose keys are collected with its name as prefix.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
			keys = append(keys, tomlKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

var textUnmarshaler = reflect.TypeOf((*interface{ UnmarshalText([]byte) error })(nil)).Elem()

var (
	// ".SH SETTINGS" starts the settings; the next .SH ends them.
	shLine = regexp.MustCompile(`^\.SH\s+"?([^"]*)"?\s*$`)
	// ".SS The [smtpd] table" opens a table; any other .SS is top level.
	ssLine    = regexp.MustCompile(`^\.SS\s+`)
	ssTable   = regexp.MustCompile(`\[([a-z0-9_]+)\]`)
	keyTag    = regexp.MustCompile(`^\.BR?\s+"?([a-z][a-z0-9_]*)\b`)
	tagIntro  = ".TP"
	pageTOML5 = "posthorn.toml.5"
)

// documentedKeys reads posthorn.toml(5): under SETTINGS, every .TP whose tag
// line is ".B key" or ".BR key ..." documents key, dotted with the table of
// the .SS it appears under.
func documentedKeys(t *testing.T, page []byte) map[string]int {
	t.Helper()
	keys := map[string]int{}
	inSettings, table, afterTP := false, "", false
	for n, line := range strings.Split(string(page), "\n") {
		if m := shLine.FindStringSubmatch(line); m != nil {
			inSettings, table = m[1] == "SETTINGS", ""
			continue
		}
		if !inSettings {
			continue
		}
		if ssLine.MatchString(line) {
			table = ""
			if m := ssTable.FindStringSubmatch(line); m != nil {
				table = m[1] + "."
			}
			continue
		}
		if line == tagIntro {
			afterTP = true
			continue
		}
		if afterTP {
			afterTP = false
			if m := keyTag.FindStringSubmatch(line); m != nil {
				keys[table+m[1]] = n + 1
			}
		}
	}
	return keys
}

// TestManualDocumentsEverySetting fails when a setting of Config is missing
// from posthorn.toml(5), or the page documents a setting that does not
// exist: adding a setting means documenting it.
func TestManualDocumentsEverySetting(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(manDir, pageTOML5))
	if err != nil {
		t.Fatal(err)
	}
	doc := documentedKeys(t, page)
	code := map[string]bool{}
	for _, k := range tomlKeys(reflect.TypeOf(Config{}), "") {
		code[k] = true
	}
	for _, k := range []string{"hostname", "smtpd.recipient_limit", "queue.maximal_queue_lifetime", "master.stop_grace"} {
		if !code[k] {
			t.Fatalf("the walk of Config did not find %s: it is broken", k)
		}
	}
	var missing, extra []string
	for k := range code {
		if _, ok := doc[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k, line := range doc {
		if !code[k] {
			extra = append(extra, k+" (line "+strconv.Itoa(line)+")")
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, k := range missing {
		t.Errorf("setting %s is not documented in man/%s (a .TP entry under SETTINGS, in the .SS of its table)", k, pageTOML5)
	}
	for _, k := range extra {
		t.Errorf("man/%s documents %s, which is no setting of config.Config", pageTOML5, k)
	}
}

// TestManualDefaults checks that each default the page states for a
// setting is the one Defaults returns, where the value can be compared.
func TestManualDefaults(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(manDir, pageTOML5))
	if err != nil {
		t.Fatal(err)
	}
	// ".BR key " (type; default: value)"": the value, roff escapes undone.
	entry := regexp.MustCompile(`^\.BR\s+([a-z_0-9]+)\s+"\s*\(([^;]+); default: (.*)\)"\s*$`)
	unescape := strings.NewReplacer(`\(dq`, `"`, `\-`, `-`, `\e`, `\`)
	d := Defaults()
	values := map[string]reflect.Value{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
				walk(v.Field(i), prefix+name+".")
				continue
			}
			values[prefix+name] = v.Field(i)
		}
	}
	walk(reflect.ValueOf(d).Elem(), "")

	table, checked := "", map[string]bool{}
	for _, line := range strings.Split(string(page), "\n") {
		if ssLine.MatchString(line) {
			table = ""
			if m := ssTable.FindStringSubmatch(line); m != nil {
				table = m[1] + "."
			}
			continue
		}
		m := entry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key, typ, want := table+m[1], m[2], unescape.Replace(m[3])
		v, ok := values[key]
		if !ok {
			continue // TestManualDocumentsEverySetting reports it
		}
		if key == "hostname" {
			continue // the machine's name, described in words
		}
		var got string
		switch x := v.Interface().(type) {
		case string:
			got = `"` + x + `"`
		case []string:
			q := make([]string, len(x))
			for i, s := range x {
				q[i] = `"` + s + `"`
			}
			got = "[" + strings.Join(q, ", ") + "]"
		case Duration:
			pd, err := ParseDuration(strings.Trim(want, `"`))
			if err != nil || Duration(pd) != x {
				t.Errorf("man/%s: %s default %s, but Defaults has %s", pageTOML5, key, want, x.D())
			}
			checked[key] = true
			continue
		default:
			got = fmtValue(v)
		}
		if got != want {
			t.Errorf("man/%s: %s (%s) default %s, but Defaults has %s", pageTOML5, key, typ, want, got)
		}
		checked[key] = true
	}
	var unchecked []string
	for key := range documentedKeys(t, page) {
		if _, ok := values[key]; ok && !checked[key] && key != "hostname" {
			unchecked = append(unchecked, key)
		}
	}
	sort.Strings(unchecked)
	for _, key := range unchecked {
		t.Errorf("man/%s: the entry of %s does not have the shape .BR key \" (type; default: value)\"", pageTOML5, key)
	}
}

func fmtValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return "true"
		}
		return "false"
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	}
	return v.String()
}

// TestManualPagesLint runs mandoc -Tlint over every file in man/; any
// message, down to style hints, fails the test.
func TestManualPagesLint(t *testing.T) {
	entries, err := os.ReadDir(manDir)
	if err != nil {
		t.Fatal(err)
	}
	var pages []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			pages = append(pages, filepath.Join(manDir, e.Name()))
		}
	}
	if len(pages) == 0 {
		t.Fatal("no manual pages found in man/")
	}
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Fatal("mandoc is not installed: run make test, which installs it (as root), or apt-get install mandoc")
	}
	for _, p := range pages {
		var out bytes.Buffer
		cmd := exec.Command(mandoc, "-Tlint", p)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err != nil || out.Len() > 0 {
			t.Errorf("mandoc -Tlint %s: %v\n%s", filepath.Base(p), err, out.String())
		}
	}
}
