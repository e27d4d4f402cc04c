// Command testcluster is a multi-call binary holding the pieces of a throwaway
// Kubernetes control plane, all built from Go modules:
//
//	testcluster etcd                    [etcd flags]
//	testcluster kube-apiserver          [apiserver flags]
//	testcluster kube-controller-manager [kcm flags]
//	testcluster kubectl                 [kubectl args]
//	testcluster kstatus                 < object.json   (prints the kstatus of one object)
//
// It also dispatches on argv[0], so a symlink named "kubectl" works.
// Exactly one component runs per process: the apiserver and controller-manager
// install process-wide signal handlers and global klog/feature-gate state.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as upstream's mains do

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testcluster {etcd|kube-apiserver|kube-controller-manager|kubectl|kstatus} [args...]")
	os.Exit(2)
}

// kstatus reads one Kubernetes object as JSON on stdin and prints
// {"status": "...", "message": "..."} as computed by sigs.k8s.io/cli-utils,
// the library Flux uses to judge health.
func kstatus() int {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	res, err := status.Compute(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, _ := json.Marshal(map[string]string{"status": res.Status.String(), "message": res.Message})
	fmt.Println(string(out))
	return 0
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	switch name {
	case "etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "kstatus":
		// called through a symlink
	default:
		if len(args) == 0 {
			usage()
		}
		name, args = args[0], args[1:]
	}
	// cobra and etcdmain both read os.Args: make the sub-command argv[0].
	os.Args = append([]string{name}, args...)

	switch name {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserverapp.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(kcmapp.NewControllerManagerCommand()))
	case "kubectl":
		command := kubectlcmd.NewDefaultKubectlCommand()
		if err := cli.RunNoErrOutput(command); err != nil {
			kubectlutil.CheckErr(err)
		}
	case "kstatus":
		os.Exit(kstatus())
	default:
		usage()
	}
}
