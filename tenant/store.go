package tenant

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Certificates are stored in bundles (layout: see Provision): 256 shards by a hash of the
// service domain. One file per tenant would cost a file creation and a rename per certificate:
// 4.2 s per 10k tenants on the machine where this was measured, against about 0.2 s for all 256
// bundles.
//
// A bundle is PEM that openssl and Go read as a plain certificate list: a header comment naming
// the format, the key type and the CA, then per certificate a comment line "# <domain> <host>
// <scenario>" and its CERTIFICATE block. Comment lines sit outside PEM blocks, where PEM readers
// skip text. Bundles are rewritten whole, through a temporary file and a rename, so a reader sees
// the old file or the new one; a damaged bundle (interrupted write, disk trouble, hand edit) is
// read up to the damage and then rewritten.
const (
	bundleFormat = "edgesim-certs/1"
	bundleShards = 256
	tempMarker   = ".tmp-"
	derSlab      = 64 << 10 // parseBundle's unit of allocation for DER
	pemCertBegin = "-----BEGIN CERTIFICATE-----\n"
	pemCertEnd   = "-----END CERTIFICATE-----\n"
)

// shardOf returns the bundle shard holding domain's certificates.
func shardOf(domain string) int {
	h := fnv.New32a()
	h.Write([]byte(domain))
	return int(h.Sum32() % bundleShards)
}

func shardFile(i int) string { return fmt.Sprintf("%02x.pem", i) }

func bundleHeader(kt KeyType, caID string) string {
	return "# " + bundleFormat + " key-type=" + string(kt) + " ca=" + caID
}

// record is one stored certificate: who it is for and its DER.
type record struct {
	domain, host string
	scenario     Scenario
	der          []byte
}

func (r record) key() string { return recordKey(r.domain, r.host, r.scenario) }

func recordKey(domain, host string, sc Scenario) string {
	return domain + " " + host + " " + string(sc)
}

// parseBundle reads the records of a bundle written with header. intact is false when the file
// has another header or is damaged; the records before the damage are still returned. The DER
// slices are fresh copies, so data can be reused afterwards; they are cut from a few shared
// blocks (derSlab) rather than allocated one by one.
func parseBundle(data []byte, header string) (recs []record, intact bool) {
	var slab []byte
	line, rest := cutLine(data)
	if string(line) != header {
		return nil, false
	}
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		fields := strings.Fields(strings.TrimPrefix(string(line), "# "))
		if !bytes.HasPrefix(line, []byte("# ")) || len(fields) != 3 || !bytes.HasPrefix(rest, []byte(pemCertBegin)) {
			return recs, false
		}
		// Decode exactly this record's block: pem.Decode alone would skip a damaged block and
		// return the next one, pairing a certificate with the wrong comment line.
		end := bytes.Index(rest, []byte(pemCertEnd))
		if end < 0 {
			return recs, false
		}
		var chunk []byte
		chunk, rest = rest[:end+len(pemCertEnd)], rest[end+len(pemCertEnd):]
		if bytes.Count(chunk, []byte("-----")) != 4 { // exactly one BEGIN and one END line
			return recs, false
		}
		// The base64 between the BEGIN and END lines, decoded directly: pem.Decode looks for
		// headers and searches the END line backwards, 12% of a one-core start at a million
		// tenants (CPU profile). A header line, which holds a colon, fails to decode.
		body := chunk[len(pemCertBegin) : len(chunk)-len(pemCertEnd)]
		if len(body) == 0 || body[len(body)-1] != '\n' { // the END line on a line of its own, as PEM readers want
			return recs, false
		}
		if need := base64.StdEncoding.DecodedLen(len(body)); cap(slab)-len(slab) < need {
			// At most what the rest of the file can decode to: a bundle of a few certificates
			// (1,000 tenants make 256 bundles of about 4) gets a block its size, not 64 KiB.
			slab = make([]byte, 0, max(need, min(derSlab, base64.StdEncoding.DecodedLen(len(rest)+len(chunk)))))
		}
		der := slab[len(slab):cap(slab)]
		n, err := base64.StdEncoding.Decode(der, body)
		if err != nil || n == 0 {
			return recs, false
		}
		slab = slab[:len(slab)+n]
		recs = append(recs, record{domain: fields[0], host: fields[1], scenario: Scenario(fields[2]), der: der[:n:n]})
	}
	return recs, true
}

func cutLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	return line, rest
}

// writeBundle replaces path with a bundle of recs.
func writeBundle(path, header string, recs []record) error {
	return writeFileAtomic(path, 0o644, false, func(w *fileWriter) error {
		w.WriteString(header)
		w.WriteByte('\n')
		for _, r := range recs {
			w.WriteString("# ")
			w.WriteString(r.key())
			w.WriteByte('\n')
			if err := pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: r.der}); err != nil {
				return err
			}
		}
		return nil
	})
}

// fileWriter buffers writes to a temporary file; writeFileAtomic reports its first error.
type fileWriter struct{ *bufio.Writer }

// writeFileAtomic writes path through a temporary file in the same directory and a rename, so
// an interrupted write leaves the old file (or none) and a stray temporary file that
// removeTemps deletes. With sync, the data reach the disk before the rename: worth it for the
// few files that cannot be regenerated without consequences (CA, keys), not for bundles.
func writeFileAtomic(path string, perm os.FileMode, sync bool, fill func(*fileWriter) error) (err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("tenant: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("tenant: write %s: %w", path, err)
		}
	}()
	w := &fileWriter{bufio.NewWriterSize(f, 64<<10)}
	if err = fill(w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// removeTemps deletes temporary files left in dir by interrupted writes.
func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tempMarker) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// mkdirPrivate creates dir and its missing parents with mode 0700. With tighten, group and
// other access is removed from an existing dir (for folders edgesim owns, never the user's).
func mkdirPrivate(dir string, tighten bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tenant: data directory: %w", err)
	}
	if !tighten {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tenant: data directory: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, fi.Mode().Perm()&0o700); err != nil {
			return fmt.Errorf("tenant: data directory: %w", err)
		}
	}
	return nil
}

// readOptional reads path; a missing file is (nil, nil).
func readOptional(path string) ([]byte, error) { return readOptionalInto(new(bytes.Buffer), path) }

// readBuffers holds the buffers bundles are read into. A bundle is parsed into fresh copies and
// then dropped, so one buffer per worker serves every bundle: os.ReadFile's fresh buffer per file
// was 800 MB of allocation and page faults at a million tenants.
var readBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readOptionalInto reads path into buf (reset first) and returns its bytes, valid until buf is
// used again; a missing file is (nil, nil), an empty one a non-nil empty slice.
func readOptionalInto(buf *bytes.Buffer, path string) ([]byte, error) {
	buf.Reset()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		buf.Grow(int(fi.Size()) + 1)
	}
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	if buf.Len() == 0 {
		return []byte{}, nil // present but empty: not nil, which means missing
	}
	return buf.Bytes(), nil
}
