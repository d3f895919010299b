package driver

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// classMeaning says in a short phrase what each failure class means, for reports.
var classMeaning = map[Class]string{
	ClassNone:          "no class recorded",
	ClassDNSTimeout:    "the DNS server did not answer in time",
	ClassDNSNXDomain:   "no such name, or no SRV or address records",
	ClassDNSError:      "SERVFAIL, REFUSED, or an unusable DNS answer",
	ClassInside:        "_cisco-uds._tcp answered: the client would not use MRA",
	ClassConnect:       "TCP connection refused or reset",
	ClassTimeout:       "a connect, handshake or exchange took longer than allowed",
	ClassHandshake:     "TLS alert or protocol failure during the handshake",
	ClassPlatformCert:  "the edge presented its platform certificate, not the domain's",
	ClassExpired:       "the certificate is outside its validity dates",
	ClassUntrusted:     "the chain does not lead to a trusted root",
	ClassNameMismatch:  "the certificate does not name the host connected to",
	ClassEdgeDomain:    "the service domain is not among the certificate's SANs",
	ClassUnauthorized:  "user or password refused (HTTP 401 or SASL not-authorized)",
	ClassForbidden:     "HTTP 403: the domain is not configured for MRA",
	ClassHTTP:          "another HTTP status",
	ClassBadEdgeConfig: "get_edge_config answered something a client cannot use",
	ClassXMPP:          "the XMPP exchange went wrong",
	ClassSIP:           "the SIP exchange went wrong",
	ClassCanceled:      "the run stopped before the login finished",
}

// ClassMeaning returns a short phrase saying what failures of class c are.
func ClassMeaning(c Class) string {
	if m, ok := classMeaning[c]; ok {
		return m
	}
	return "a class this edgesim does not know (written by a newer driver?)"
}

// driverBusyPercent is the driver CPU use above which the driver, not the edge, may be what
// limits a run.
const driverBusyPercent = 80

// classCount is one row of the errors-by-class table.
type classCount struct {
	Class Class
	Count int64
}

// errorsByClass lists r.Errors by count, most first, then by class name.
func (r *Results) errorsByClass() []classCount {
	var out []classCount
	for c, n := range r.Errors {
		if n != 0 {
			out = append(out, classCount{c, n})
		}
	}
	slices.SortFunc(out, func(a, b classCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Class, b.Class)
	})
	return out
}

// WriteSummary writes the plain-text report of r for people: how the run was made, what it
// achieved, the latency of each step, the failures by class, and whether the driver itself was
// busy enough to distort the results.
func (r *Results) WriteSummary(w io.Writer) error {
	bw := bufio.NewWriter(w)
	r.writeHeader(bw)
	fmt.Fprintln(bw)
	fmt.Fprintf(bw, "logins    %s\n", r.totalsLine())
	if s := r.Settings; s.Rate > 0 && !r.Interrupted && r.Totals.Completed > 0 && r.achievedRate() < 0.9*s.Rate {
		login := Quantiles{}
		for _, st := range r.Steps {
			if st.Step == StepLogin {
				login = st.Quantiles
			}
		}
		fmt.Fprintf(bw, "warning   the run did not keep up: %s/s completed of the %s/s asked; logins queued, and their latency from intended start grew to p50 %s ms, max %s ms\n",
			fmtRate(r.achievedRate()), fmtRate(s.Rate), fmtMS(login.P50), fmtMS(login.Max))
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(bw)
		if err := r.writeStepTable(bw); err != nil {
			return err
		}
	}
	for _, s := range r.Steps {
		if s.Resumed > 0 {
			fmt.Fprintf(bw, "%s: %d of %d TLS handshakes resumed a session (%s)\n", s.Step, s.Resumed, s.Count, percent(s.Resumed, s.Count))
		}
	}
	if classes := r.errorsByClass(); len(classes) > 0 {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, "failed logins by the class of their first failing step:")
		width := 0
		for _, cc := range classes {
			width = max(width, len(oneLine(string(cc.Class))))
		}
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, cc := range classes {
			fmt.Fprintf(tw, "%-*s\t%d\t%s\t  %s\n", width, oneLine(string(cc.Class)), cc.Count, percent(cc.Count, r.Totals.Failed), ClassMeaning(cc.Class))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Driver) > 0 {
		fmt.Fprintln(bw)
		for _, d := range r.Driver {
			fmt.Fprintln(bw, driverLine(d))
		}
	}
	return bw.Flush()
}

func (r *Results) writeHeader(w io.Writer) {
	s := r.Settings
	model := s.Model
	if model == "" {
		model = "unknown"
	}
	fmt.Fprintf(w, "edgesim load report: %s model", model)
	if r.Shards > 1 {
		fmt.Fprintf(w, ", %d shards merged", r.Shards)
	}
	if r.Interrupted {
		fmt.Fprintf(w, ", INTERRUPTED after %s (Ctrl-C): fewer logins than asked", fmtSeconds(r.ElapsedSeconds))
	}
	fmt.Fprintln(w)
	if s.Command != "" {
		fmt.Fprintf(w, "command   %s\n", oneLine(s.Command))
	}
	achieved := fmt.Sprintf("%s/s achieved (%d completed in %s)", fmtRate(r.achievedRate()), r.Totals.Completed, fmtSeconds(r.ElapsedSeconds))
	switch {
	case s.Rate > 0:
		fmt.Fprintf(w, "rate      %s/s asked, %s\n", fmtRate(s.Rate), achieved)
	case s.Concurrency > 0:
		fmt.Fprintf(w, "rate      %d logins in flight, %s\n", s.Concurrency, achieved)
	default:
		fmt.Fprintf(w, "rate      %s\n", achieved)
	}
	var dur []string
	if s.Duration > 0 {
		dur = append(dur, fmtSeconds(s.Duration)+" asked")
	}
	if s.Count > 0 {
		dur = append(dur, fmt.Sprintf("%d logins asked", s.Count))
	}
	dur = append(dur, fmtSeconds(r.ElapsedSeconds)+" run")
	if !r.Started.IsZero() {
		dur = append(dur, fmt.Sprintf("from %s to %s", r.Started.UTC().Format(time.DateTime), r.Ended.UTC().Format("15:04:05 UTC")))
	}
	fmt.Fprintf(w, "duration  %s\n", strings.Join(dur, ", "))
	users := fmt.Sprintf("%d", s.Users)
	if s.Source != "" {
		users += " from " + oneLine(s.Source)
	}
	if s.Resume {
		users += ", resuming sessions"
	}
	fmt.Fprintf(w, "users     %s\n", users)
	steps := joinSteps(s.Steps)
	if steps == "" {
		steps = "(none recorded)"
	}
	fmt.Fprintf(w, "steps     %s\n", steps)
	if s.DNS != "" {
		fmt.Fprintf(w, "dns       %s\n", oneLine(s.DNS))
	}
	shards := strconv.Itoa(max(r.Shards, 1))
	if s.Shard != "" {
		shards = "shard " + oneLine(s.Shard)
	}
	fmt.Fprintf(w, "shards    %s\n", shards)
	for _, e := range s.Extra {
		fmt.Fprintf(w, "note      %s\n", oneLine(e))
	}
}

func (r *Results) totalsLine() string {
	t := r.Totals
	return fmt.Sprintf("%d requested, %d completed: %d succeeded (%s), %d failed (%s)",
		t.Requested, t.Completed, t.Succeeded, percent(t.Succeeded, t.Completed), t.Failed, percent(t.Failed, t.Completed))
}

func (r *Results) writeStepTable(w io.Writer) error {
	// Names are padded by hand so they read left-aligned while the numbers align right.
	width := len("step")
	for _, s := range r.Steps {
		width = max(width, len(s.Step))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tcount\terrors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t\n", width, "step")
	for _, s := range r.Steps {
		q := s.Quantiles
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", width, s.Step, s.Count, s.Errors,
			fmtMS(q.P50), fmtMS(q.P90), fmtMS(q.P99), fmtMS(q.P999), fmtMS(q.Max))
	}
	return tw.Flush()
}

// driverLine says how busy the driver was and whether that limited the run.
func driverLine(d DriverUsage) string {
	who := "driver"
	if d.Host != "" {
		who = "driver on " + oneLine(d.Host)
	}
	cores := "cores"
	if d.Cores == 1 {
		cores = "core"
	}
	verdict := "not the bottleneck"
	switch {
	case d.MaxLagMS > 100:
		verdict = fmt.Sprintf("the driver may be the bottleneck: logins waited up to %s in the driver before they began (counted in their latency; raise --max-in-flight, or add driver cores or shards)", fmtLag(d.MaxLagMS))
	case d.busy():
		verdict = "the driver may be the bottleneck (its busiest second used most of its cores): results understate the edge"
	}
	extra := ""
	if d.PeakCPUPercent > d.CPUPercent+5 {
		extra = fmt.Sprintf(", %.0f%% in its busiest second", d.PeakCPUPercent)
	}
	if d.MaxRSSMB > 0 {
		extra += fmt.Sprintf(", %.0f MB resident", d.MaxRSSMB)
	}
	return fmt.Sprintf("%s used %.0f%% of %d %s on average (%s): %s", who, d.CPUPercent, d.Cores, cores, strings.TrimPrefix(extra, ", "), verdict)
}

func fmtLag(ms float64) string {
	if ms >= 1000 {
		return fmt.Sprintf("%.1f s", ms/1000)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// percent is n/of as a percentage, "-" when of is 0.
func percent(n, of int64) string {
	if of == 0 {
		return "-"
	}
	p := 100 * float64(n) / float64(of)
	if p > 0 && p < 0.1 {
		return fmt.Sprintf("%.2f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

// fmtMS formats milliseconds with about three significant digits.
func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "0"
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64)
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64)
	case ms >= 1:
		return strconv.FormatFloat(ms, 'f', 2, 64)
	}
	return strconv.FormatFloat(ms, 'f', 3, 64)
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', 1, 64) }

func fmtSeconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" }

// oneLine keeps a string from the file on one line of the report.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
