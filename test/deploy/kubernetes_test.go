package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/spooky-lb/spooky/config"
)

const manifestDir = "../../deploy/kubernetes"

// manifests is every object in deploy/kubernetes, by kind.
type manifests struct {
	daemonSets []*appsv1.DaemonSet
	pdbs       []*policyv1.PodDisruptionBudget
	configMaps []*corev1.ConfigMap
	accounts   []*corev1.ServiceAccount
	namespaces []*corev1.Namespace
}

// decodeStrict decodes one YAML document into v, failing on a field v's
// type does not have, so a misspelled field is an error, not ignored.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func mustLoadManifests(tb testing.TB) manifests {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no manifests in %s: %v", manifestDir, err)
	}
	var m manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for i, doc := range docSep.Split(string(data), -1) {
			if err := m.add([]byte(doc)); err != nil {
				tb.Errorf("%s, document %d: %v", filepath.Base(f), i+1, err)
			}
		}
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return err
	}
	var err error
	switch head.APIVersion + " " + head.Kind {
	case " ":
		return nil // an empty document
	case "apps/v1 DaemonSet":
		v := new(appsv1.DaemonSet)
		err = decodeStrict(doc, v)
		m.daemonSets = append(m.daemonSets, v)
	case "policy/v1 PodDisruptionBudget":
		v := new(policyv1.PodDisruptionBudget)
		err = decodeStrict(doc, v)
		m.pdbs = append(m.pdbs, v)
	case "v1 ConfigMap":
		v := new(corev1.ConfigMap)
		err = decodeStrict(doc, v)
		m.configMaps = append(m.configMaps, v)
	case "v1 ServiceAccount":
		v := new(corev1.ServiceAccount)
		err = decodeStrict(doc, v)
		m.accounts = append(m.accounts, v)
	case "v1 Namespace":
		v := new(corev1.Namespace)
		err = decodeStrict(doc, v)
		m.namespaces = append(m.namespaces, v)
	default:
		return fmt.Errorf("unexpected object %s %s", head.APIVersion, head.Kind)
	}
	return err
}

func TestDecodeStrictRejectsAMisspelledField(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n")
	if err := decodeStrict(doc, new(appsv1.DaemonSet)); err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Fatalf("decodeStrict of a misspelled field: err = %v, want an unknown field error", err)
	}
}

func TestKubernetesManifests(t *testing.T) {
	m := mustLoadManifests(t)
	if len(m.daemonSets) != 1 || len(m.pdbs) != 1 || len(m.configMaps) != 1 || len(m.accounts) != 1 {
		t.Fatalf("want one DaemonSet, PodDisruptionBudget, ConfigMap and ServiceAccount; have %d, %d, %d, %d",
			len(m.daemonSets), len(m.pdbs), len(m.configMaps), len(m.accounts))
	}
	ds, pdb, cm, sa := m.daemonSets[0], m.pdbs[0], m.configMaps[0], m.accounts[0]
	pod := ds.Spec.Template.Spec

	t.Run("every object is in one namespace", func(t *testing.T) {
		ns := ds.Namespace
		for _, got := range []string{pdb.Namespace, cm.Namespace, sa.Namespace} {
			if got != ns || ns == "" {
				t.Errorf("namespace %q, want %q (the DaemonSet's, not empty)", got, ns)
			}
		}
		if len(m.namespaces) > 0 && m.namespaces[0].Name != ns {
			t.Errorf("Namespace object %q, objects in %q", m.namespaces[0].Name, ns)
		}
	})

	t.Run("the pod runs in the node's network namespace on edge nodes", func(t *testing.T) {
		if !pod.HostNetwork {
			t.Error("hostNetwork is false: XDP would attach to the pod's veth")
		}
		if pod.NodeSelector["spooky.dev/edge"] != "true" {
			t.Errorf("nodeSelector %v, want spooky.dev/edge: \"true\"", pod.NodeSelector)
		}
		if !labelsMatch(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
			t.Errorf("DaemonSet selector %v does not match the pod's labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
		}
	})

	t.Run("the service account carries no token and the pod mounts none", func(t *testing.T) {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("ServiceAccount automountServiceAccountToken is not false")
		}
		if pod.ServiceAccountName != sa.Name {
			t.Errorf("pod service account %q, want %q", pod.ServiceAccountName, sa.Name)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("pod automountServiceAccountToken is not false")
		}
	})

	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("the container drops every capability but those attach needs", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil {
			t.Fatal("no securityContext.capabilities")
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
		}
		add := slices.Sorted(slices.Values(sc.Capabilities.Add))
		want := []corev1.Capability{"BPF", "NET_ADMIN", "NET_BIND_SERVICE", "PERFMON"}
		if !slices.Equal(add, want) {
			t.Errorf("add %v, want exactly %v", add, want)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged container")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem is not true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Error("runAsUser is not 0: added capabilities reach uid 0 only")
		}
	})

	t.Run("the node's bpffs is mounted so the pins outlive the pod", func(t *testing.T) {
		v := mustVolume(t, pod, mustMount(t, c, "/sys/fs/bpf").Name)
		if v.HostPath == nil || v.HostPath.Path != "/sys/fs/bpf" {
			t.Fatalf("/sys/fs/bpf comes from %+v, want hostPath /sys/fs/bpf", v.VolumeSource)
		}
		if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
			t.Errorf("bpffs hostPath type %v, want Directory", v.HostPath.Type)
		}
		if mustMount(t, c, "/sys/fs/bpf").ReadOnly {
			t.Error("bpffs mounted read-only: spooky pins there")
		}
	})

	cfgMount := mustMount(t, c, "/etc/spooky")
	t.Run("the config comes from the ConfigMap and is watched", func(t *testing.T) {
		v := mustVolume(t, pod, cfgMount.Name)
		if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
			t.Errorf("/etc/spooky comes from %+v, want ConfigMap %q", v.VolumeSource, cm.Name)
		}
		if cfgMount.SubPath != "" {
			t.Error("/etc/spooky mounted with subPath: the kubelet never updates those, so --watch would see no change")
		}
		want := []string{"attach", "$(IFACE)", "-c", "/etc/spooky/spooky.yaml", "--watch", "2s"}
		if !slices.Equal(c.Args, want) {
			t.Errorf("args %q, want %q", c.Args, want)
		}
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "IFACE" && e.Value != "" }) {
			t.Error("no IFACE in the container's env for $(IFACE)")
		}
	})

	data, ok := cm.Data["spooky.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no spooky.yaml")
	}
	cfg, err := config.Parse([]byte(data), "configmap.yaml:spooky.yaml")
	if err != nil {
		t.Fatalf("the ConfigMap's spooky.yaml does not validate: %v", err)
	}

	t.Run("the probes ask /healthz and /readyz where metrics listen", func(t *testing.T) {
		_, portText, err := splitListen(cfg.Metrics.Listen)
		if err != nil {
			t.Fatalf("metrics.listen %q: %v", cfg.Metrics.Listen, err)
		}
		host, _, _ := splitListen(cfg.Metrics.Listen)
		if host == "127.0.0.1" || host == "::1" || host == "localhost" {
			t.Errorf("metrics.listen %q is loopback: the kubelet probes the node's address", cfg.Metrics.Listen)
		}
		port, _ := strconv.Atoi(portText)
		for _, p := range []struct {
			name, path string
			probe      *corev1.Probe
		}{
			{"startup", "/healthz", c.StartupProbe},
			{"liveness", "/healthz", c.LivenessProbe},
			{"readiness", "/readyz", c.ReadinessProbe},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("no %s httpGet probe", p.name)
				continue
			}
			g := p.probe.HTTPGet
			if g.Path != p.path {
				t.Errorf("%s probe path %q, want %q", p.name, g.Path, p.path)
			}
			if got := probePort(c, g.Port.String()); got != port {
				t.Errorf("%s probe port %s (%d), metrics listen on %d", p.name, g.Port.String(), got, port)
			}
		}
	})

	t.Run("the admin API stays off the network", func(t *testing.T) {
		if cfg.Admin.Listen != "" {
			t.Errorf("admin.listen %q: with hostNetwork the admin API belongs on a unix socket", cfg.Admin.Listen)
		}
		dir := filepath.Dir(cfg.Admin.Socket)
		if cfg.Admin.Socket == "" || !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == dir }) {
			t.Errorf("admin socket %q is not on a mounted volume", cfg.Admin.Socket)
		}
	})

	t.Run("a rolling update replaces one node's pod at a time without surge", func(t *testing.T) {
		u := ds.Spec.UpdateStrategy
		if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil {
			t.Fatalf("updateStrategy %+v, want RollingUpdate", u)
		}
		if mu := u.RollingUpdate.MaxUnavailable; mu == nil || mu.String() != "1" {
			t.Errorf("maxUnavailable %v, want 1", mu)
		}
		if ms := u.RollingUpdate.MaxSurge; ms == nil || ms.String() != "0" {
			t.Errorf("maxSurge %v, want 0: two pods on a node would share its port and pins", ms)
		}
	})

	t.Run("the disruption budget covers the pods one at a time", func(t *testing.T) {
		if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.String() != "1" {
			t.Errorf("maxUnavailable %v, want 1", mu)
		}
		if pdb.Spec.Selector == nil || !labelsMatch(pdb.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
			t.Errorf("PodDisruptionBudget selector %v does not match the pod's labels %v", pdb.Spec.Selector, ds.Spec.Template.Labels)
		}
	})
}

// splitListen splits host:port.
func splitListen(listen string) (host, port string, err error) {
	i := strings.LastIndex(listen, ":")
	if i < 0 {
		return "", "", fmt.Errorf("no port")
	}
	return strings.Trim(listen[:i], "[]"), listen[i+1:], nil
}

// probePort resolves a probe's port, a number or a container port's name.
func probePort(c corev1.Container, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return int(p.ContainerPort)
		}
	}
	return -1
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func mustMount(tb testing.TB, c corev1.Container, path string) corev1.VolumeMount {
	tb.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return vm
		}
	}
	tb.Fatalf("container %s mounts nothing at %s", c.Name, path)
	return corev1.VolumeMount{}
}

func mustVolume(tb testing.TB, pod corev1.PodSpec, name string) corev1.Volume {
	tb.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	tb.Fatalf("no volume %q", name)
	return corev1.Volume{}
}
