package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/tenant"
)

func runDNS(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			args = []string{"export", "-h"}
		} else {
			return usagef("the dns command has one subcommand: 'edgesim dns export [flags]' (see 'edgesim dns export -h')")
		}
	}
	var o serveOptions
	var out, addr string
	var port int
	fs := newFlagSet("dns export", "edgesim dns export [--tenants N | --config tenants.yaml] --out DIR [--addr IP] [--port 8443]", stderr)
	fs.StringVar(&o.config, "config", "", "tenants YAML file (default: the built-in scenario tenants, unless --tenants is set)")
	fs.IntVar(&o.tenants, "tenants", 0, "generate `N` tenants as 'edgesim serve --tenants N' does")
	fs.IntVar(&o.users, "users", tenant.DefaultUsers, "users per generated tenant")
	fs.StringVar(&out, "out", "zones", "`DIR` to write one <zone>.zone master file per zone into")
	fs.StringVar(&addr, "addr", "127.0.0.1", "`IP` of the edge hosts and the name server")
	fs.IntVar(&port, "port", 8443, "SRV port where a record sets none (the HTTPS edge port)")
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return usagef("--addr %q is not an IP address", addr)
	}
	if port < 1 || port > 65535 {
		return usagef("--port %d is not a TCP port", port)
	}
	dir, err := loadDirectory(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	zones := newTenantZones(dir, uint16(port), []netip.Addr{ip}, []netip.Addr{ip})
	n := 0
	zones.Each(func(z *dnssrv.Zone) bool {
		var f *os.File
		if f, err = os.Create(filepath.Join(out, z.Origin+".zone")); err != nil {
			return false
		}
		if err = dnssrv.WriteZoneFile(f, z, zones.nameserver, dnssrv.DefaultTTL); err != nil {
			f.Close()
			return false
		}
		if err = f.Close(); err != nil {
			return false
		}
		n++
		return true
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s zone files to %s (check one: named-checkzone %s %s)\n", strconv.Itoa(n), out,
		dir.Provider().Domain, filepath.Join(out, dir.Provider().Domain+".zone"))
	return nil
}
