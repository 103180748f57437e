// Command cluster is the sandbox's Kubernetes: one multi-call binary with the upstream components of the
// pinned k8s.io/kubernetes release (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
// kubectl, each from its own command constructor) and an embedded single-member etcd. It dispatches on the
// basename of argv[0] (a symlink) or on the first argument: `cluster kubectl get ns` is `kubectl get ns`.
// Built by `python -m sandbox build` (sandbox/build.py) with CGO_ENABLED=0 and the release's version ldflags.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	_ "time/tzdata"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/embed"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

type entry func() int

func runCobra(mk func() *cobra.Command) entry {
	return func() int { return cli.Run(mk()) }
}

var commands = map[string]entry{
	"kube-apiserver":          runCobra(apiserver.NewAPIServerCommand),
	"kube-controller-manager": runCobra(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          runCobra(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kube-proxy":              runCobra(proxy.NewProxyCommand),
	"kubelet": runCobra(func() *cobra.Command {
		return kubelet.NewKubeletCommand(context.Background())
	}),
	"kubectl": runKubectl,
	"etcd":    runEtcd,
}

func runKubectl() int {
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	return 0
}

// runEtcd starts a single-member etcd through go.etcd.io/etcd/server/v3/embed.
func runEtcd() int {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	name := fs.String("name", "default", "member name")
	dataDir := fs.String("data-dir", "", "data directory (required)")
	clientURL := fs.String("listen-client-urls", "https://127.0.0.1:2379", "comma separated client URLs")
	peerURL := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL (single member; loopback only)")
	metricsURL := fs.String("listen-metrics-urls", "", "optional metrics/health URLs")
	cert := fs.String("cert-file", "", "client TLS server certificate")
	key := fs.String("key-file", "", "client TLS server key")
	ca := fs.String("trusted-ca-file", "", "CA for client certificate auth (enables client-cert-auth)")
	quota := fs.Int64("quota-backend-bytes", 0, "backend quota (0 = etcd default)")
	noFsync := fs.Bool("unsafe-no-fsync", false, "disable fsync (tests only)")
	logLevel := fs.String("log-level", "warn", "log level")
	_ = fs.Parse(os.Args[1:])
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	parse := func(s string) []url.URL {
		var out []url.URL
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			u, err := url.Parse(p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "etcd: bad url %q: %v\n", p, err)
				os.Exit(2)
			}
			out = append(out, *u)
		}
		return out
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = parse(*clientURL)
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	cfg.ListenPeerUrls = parse(*peerURL)
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if *metricsURL != "" {
		cfg.ListenMetricsUrls = parse(*metricsURL)
	}
	cfg.ClientTLSInfo.CertFile = *cert
	cfg.ClientTLSInfo.KeyFile = *key
	if *ca != "" {
		cfg.ClientTLSInfo.TrustedCAFile = *ca
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
	cfg.QuotaBackendBytes = *quota
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(os.Stderr, "etcd: ready, serving", *clientURL)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "etcd: %v, stopping\n", s)
		return 0
	}
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s <%s> [args...] (or symlink the binary to one of those names)\n",
		filepath.Base(os.Args[0]), strings.Join(names, "|"))
}

func main() {
	name := filepath.Base(os.Args[0])
	run, ok := commands[name]
	if !ok {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		if run, ok = commands[os.Args[1]]; !ok {
			usage()
			os.Exit(2)
		}
		// Make argv look as if we were invoked as the component itself.
		os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
	}
	os.Exit(run())
}
