package dnssrv

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestWriteZoneFileGolden(t *testing.T) {
	zs := testZones(t)
	for _, apex := range []string{"example.com", "sp.example", "tenant-1.example"} {
		t.Run(apex, func(t *testing.T) {
			z, _ := zs.Zone(apex)
			var buf bytes.Buffer
			if err := WriteZoneFile(&buf, z, "ns.sp.example", time.Minute); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", apex+".zone")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("zone file differs from %s:\n%s", golden, buf.String())
			}
		})
	}
}

// TestWriteZoneFileMatchesServer parses the exported file back with miekg's zone parser and
// checks that every record in it is what the server answers.
func TestWriteZoneFileMatchesServer(t *testing.T) {
	zs := testZones(t)
	s := newTestServer(t)
	z, _ := zs.Zone("example.com")
	var buf bytes.Buffer
	if err := WriteZoneFile(&buf, z, "ns.sp.example", 0); err != nil {
		t.Fatal(err)
	}
	zp := dns.NewZoneParser(&buf, "", "example.com.zone")
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n++
		h := rr.Header()
		w := &recorder{}
		s.ServeDNS(w, new(dns.Msg).SetQuestion(h.Name, h.Rrtype))
		found := false
		for _, a := range w.msgs[0].Answer {
			found = found || a.String() == rr.String()
		}
		if !found {
			t.Errorf("server does not answer %v: got %v", rr, w.msgs[0].Answer)
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 7 { // SOA NS 2×SRV 2×A TXT
		t.Fatalf("parsed %d records, want 7", n)
	}
}

func TestWriteZoneFileNamedCheckzone(t *testing.T) {
	checkzone, err := exec.LookPath("named-checkzone")
	if err != nil {
		t.Skip("named-checkzone not installed (apt-get install bind9-utils)")
	}
	zs := testZones(t)
	dir := t.TempDir()
	zs.Each(func(z *Zone) bool {
		t.Run(z.Origin, func(t *testing.T) {
			// -i local: check in-zone targets have addresses, never look up others (no network).
			path := filepath.Join(dir, z.Origin+".zone")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteZoneFile(f, z, "ns.sp.example", time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, checkzone, "-i", "local", "-k", "fail", "-n", "fail", "-m", "fail", "-M", "fail",
				"-S", "fail", "-r", "fail", z.Origin, path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "OK") {
				t.Fatalf("named-checkzone: %v\n%s", err, out)
			}
		})
		return true
	})
}

func TestWriteZoneFileErrors(t *testing.T) {
	z := &Zone{Origin: "example.com"}
	tests := []struct {
		name       string
		zone       *Zone
		nameserver string
		ttl        time.Duration
		want       error
	}{
		{"bad zone", &Zone{Origin: "Example.com"}, "", 0, ErrBadZone},
		{"bad nameserver", z, "ns..example", 0, ErrBadConfig},
		{"bad ttl", z, "", time.Millisecond, ErrBadConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteZoneFile(&bytes.Buffer{}, tc.zone, tc.nameserver, tc.ttl); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := WriteZoneFile(failWriter{}, z, "", 0); err == nil {
		t.Fatal("write error not returned")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
