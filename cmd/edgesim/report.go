package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edgesim/edgesim/driver"
)

const reportSynopsis = `edgesim report FILE... [--out merged.json] [--html report.html]

Reads the results files of 'edgesim load --out', merges them (shards of one run, or runs to
compare as one), and prints the summary. Flags may come before or after the files.

  edgesim report run.json
  edgesim report shard1.json shard2.json shard3.json --out run.json --html run.html`

func runReport(args []string, stdout, stderr io.Writer) error {
	var out, htmlOut string
	fs := newFlagSet("report", reportSynopsis, stderr)
	fs.StringVar(&out, "out", "", "write the merged results to `FILE` (JSON, the format 'edgesim report' reads)")
	fs.StringVar(&htmlOut, "html", "", "write the report as one self-contained HTML page to `FILE`")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usagef("no results files: 'edgesim report FILE... [--out merged.json] [--html report.html]'")
	}

	for _, f := range []string{out, htmlOut} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			return usagef("cannot write %s: its folder %s does not exist", f, filepath.Dir(f))
		}
	}
	seen := map[string]bool{}
	for _, name := range files {
		if abs, err := filepath.Abs(name); err == nil {
			if seen[abs] {
				return usagef("%s is given twice: its logins would count twice", name)
			}
			seen[abs] = true
		}
	}
	results := make([]*driver.Results, 0, len(files))
	runs := map[string]string{} // a run's identity -> the file it came from
	for _, name := range files {
		r, err := readResultsFile(name)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s|%s|%s|%+v", r.Started, r.Ended, r.Settings.Command, r.Totals)
		if prev, ok := runs[id]; ok {
			return usagef("%s and %s hold the same run: its logins would count twice", prev, name)
		}
		runs[id] = name
		results = append(results, r)
	}
	merged, err := driver.Merge(results...)
	if err != nil {
		return err
	}
	if err := merged.WriteSummary(stdout); err != nil {
		return err
	}
	// Where the files went goes to stderr, so stdout is the summary alone.
	if out != "" {
		if err := writeFileWith(out, merged.WriteJSON); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "merged results written to %s\n", out)
	}
	if htmlOut != "" {
		if err := writeFileWith(htmlOut, merged.WriteHTML); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "report written to %s\n", htmlOut)
	}
	return nil
}

// parseInterspersed parses flags wherever they are among the arguments (Go's flag package stops
// at the first argument that is not a flag) and returns the other arguments in order. After
// "--" everything is an argument.
func parseInterspersed(fs *flagSet, args []string) ([]string, error) {
	var rest []string
	for {
		err := fs.FlagSet.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, fs.parse([]string{"-h"}) // prints the usage
		}
		if err != nil {
			return nil, usagef("%v", err)
		}
		consumed := len(args) - fs.NArg()
		if consumed > 0 && args[consumed-1] == "--" {
			return append(rest, fs.Args()...), nil
		}
		if fs.NArg() == 0 {
			return rest, nil
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// readResultsFile reads one results file; its errors name the file.
func readResultsFile(name string) (*driver.Results, error) {
	f, err := os.Open(name)
	if err != nil { // *PathError names the file
		return nil, fmt.Errorf("%w (give results files written by 'edgesim load --out')", err)
	}
	defer f.Close()
	r, err := driver.ReadResults(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// writeFileWith writes what write produces to name, replacing it only when all of it is written.
func writeFileWith(name string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", name, errors.Unwrap(err))
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing left to remove
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	return nil
}
