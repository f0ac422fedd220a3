package spec

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// validator checks decoded values; every problem is reported with the
// position of the offending value.
type validator struct {
	doc  *Document
	sink *diagSink
	// targets maps each install target claimed so far (by a component or
	// a download) to the key path that claims it.
	targets map[string]string
}

func (v *validator) errf(p, format string, args ...any) {
	v.sink.addValidation(v.posOf(p), p, format, args...)
}

// keyErrf reports a problem with a mapping key itself (a sysctl name, a
// runtime handler name) at the key's position.
func (v *validator) keyErrf(p, format string, args ...any) {
	pos, ok := v.doc.keyPos[p]
	if !ok {
		pos = v.posOf(p)
	}
	v.sink.addValidation(pos, p, format, args...)
}

// posOf returns the position of p, or of its nearest recorded ancestor.
func (v *validator) posOf(p string) Pos {
	for {
		if pos, ok := v.doc.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			return v.doc.pos[""]
		}
		p = p[:i]
	}
}

func validate(doc *Document, sink *diagSink) {
	v := &validator{doc: doc, sink: sink, targets: map[string]string{}}
	n := doc.Spec
	v.enums(reflect.ValueOf(n).Elem(), "")
	if n.APIVersion != "" && n.APIVersion != APIVersion {
		v.errf("apiVersion", "unsupported apiVersion %q; this nodeprov reads %s", n.APIVersion, APIVersion)
	}
	if n.Metadata.Name != "" && !dnsLabel().MatchString(n.Metadata.Name) {
		v.errf("metadata.name", "invalid name %q: use lower-case letters, digits and '-' (at most 63)", n.Metadata.Name)
	}
	v.kernel(&n.Kernel)
	v.components(&n.Components, n.Keyrings)
	v.mirrors(n.Mirrors)
	v.keyrings(n.Keyrings)
	v.tls(&n.TLS)
	v.absPath("registryConfig", n.RegistryConfig)
	v.downloads(n.Downloads, n.Keyrings)
	v.images(n.Images, n.Keyrings)
	if n.Containerd != nil {
		v.containerd(n.Containerd)
	}
	if n.Docker != nil {
		v.docker(n)
	}
	v.files(n.Files)
	v.units(n.Units)
	v.machineID(&n.MachineID)
	v.preflight(&n.Preflight)
}

// enums checks every string field that carries an enum tag.
func (v *validator) enums(rv reflect.Value, p string) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			v.enums(rv.Elem(), p)
		}
	case reflect.Struct:
		t := rv.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			fp := keyPath(p, name)
			if opts == "inline" {
				fp = p
			}
			fv := rv.Field(i)
			if enum := sf.Tag.Get("enum"); enum != "" && fv.Kind() == reflect.String && fp != "apiVersion" {
				s := fv.String()
				if s != "" && !contains(strings.Split(enum, "|"), s) {
					v.errf(fp, "invalid value %q: expected one of %s", s, enumList(enum))
				}
				continue
			}
			v.enums(fv, fp)
		}
	case reflect.Slice:
		for i := 0; i < rv.Len(); i++ {
			v.enums(rv.Index(i), indexPath(p, i))
		}
	case reflect.Map:
		if rv.Type().Elem().Kind() == reflect.Interface {
			return
		}
		for _, k := range rv.MapKeys() {
			v.enums(rv.MapIndex(k), keyPath(p, k.String()))
		}
	}
}

func enumList(enum string) string {
	var out []string
	for _, e := range strings.Split(enum, "|") {
		if e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(out, ", ")
}

var (
	dnsLabel   = lazyRegexp(mustPattern("dns-label"))
	nodeNameRE = lazyRegexp(mustPattern("dns-subdomain"))
	moduleName = lazyRegexp(mustPattern("module"))
	sysctlKey  = lazyRegexp(mustPattern("sysctl-key"))
	hexDigits  = lazyRegexp(`^[0-9a-f]+$`)
	machineID  = lazyRegexp(mustPattern("machine-id"))
	unitName   = lazyRegexp(mustPattern("unit"))
	ownerSpec  = lazyRegexp(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	probeName  = lazyRegexp(`^[a-z0-9][a-z0-9.-]*$`)
)

func (v *validator) kernel(k *Kernel) {
	seen := map[string]int{}
	for i, m := range k.Modules {
		p := indexPath("kernel.modules", i)
		if !moduleName().MatchString(m) {
			v.errf(p, "invalid module name %q: expected letters, digits, '_' or '-'", m)
			continue
		}
		norm := strings.ReplaceAll(m, "-", "_")
		if j, dup := seen[norm]; dup {
			v.errf(p, "module %q is listed twice (also at kernel.modules[%d])", m, j)
		}
		seen[norm] = i
	}
	for key, val := range k.Sysctl {
		p := keyPath("kernel.sysctl", key)
		if !sysctlKey().MatchString(key) || strings.Contains(key, "..") {
			v.keyErrf(p, "invalid sysctl key %q: expected dotted lower-case names such as net.ipv4.ip_forward", key)
		}
		s := string(val)
		switch {
		case strings.TrimSpace(s) == "":
			v.errf(p, "sysctl %s has an empty value", key)
		case strings.ContainsAny(s, "\n\r\x00"):
			v.errf(p, "sysctl %s: value must be a single line", key)
		case len(s) > 4096:
			v.errf(p, "sysctl %s: value is longer than 4096 bytes", key)
		}
	}
}

func (v *validator) components(c *Components, keyrings map[string]Keyring) {
	type rel struct {
		name    string
		r       *Release
		pattern *regexp.Regexp
		example string
	}
	var rels []rel
	if c.Containerd != nil {
		rels = append(rels, rel{"containerd", &c.Containerd.Release, semver(), "2.1.4"})
		v.targetPath("components.containerd.installDir", c.Containerd.InstallDir)
	}
	if c.Runc != nil {
		rels = append(rels, rel{"runc", &c.Runc.Release, semverPre(), "1.3.0"})
		v.targetPath("components.runc.path", c.Runc.Path)
		v.keyringRef("components.runc.keyring", c.Runc.Keyring, keyrings)
	}
	if c.CNI != nil {
		rels = append(rels, rel{"cni", &c.CNI.Release, semver(), "1.7.1"})
		v.targetPath("components.cni.installDir", c.CNI.InstallDir)
		v.names("components.cni.plugins", "CNI plugin", c.CNI.Plugins, CNIPlugins)
	}
	if c.GVisor != nil {
		rels = append(rels, rel{"gvisor", &c.GVisor.Release, gvisorVersion(), "20250512"})
		v.targetPath("components.gvisor.installDir", c.GVisor.InstallDir)
	}
	if c.Crictl != nil {
		rels = append(rels, rel{"crictl", &c.Crictl.Release, semver(), "1.33.0"})
		v.targetPath("components.crictl.installDir", c.Crictl.InstallDir)
	}
	if c.Docker != nil {
		rels = append(rels, rel{"docker", &c.Docker.Release, semver(), "28.5.2"})
		v.targetPath("components.docker.installDir", c.Docker.InstallDir)
		v.targetPath("components.docker.bundledDir", c.Docker.BundledDir)
		v.requirePin("components.docker", &c.Docker.Release, "Docker publishes no checksum file for its static releases (download.docker.com/linux/static)")
	}
	if c.CriDockerd != nil {
		rels = append(rels, rel{"criDockerd", &c.CriDockerd.Release, semver(), "0.4.3"})
		v.targetPath("components.criDockerd.installDir", c.CriDockerd.InstallDir)
		v.requirePin("components.criDockerd", &c.CriDockerd.Release, "cri-dockerd's GitHub releases publish no checksum file")
	}
	if c.Kata != nil {
		rels = append(rels, rel{"kata", &c.Kata.Release, semver(), "3.32.0"})
		v.kata(c.Kata)
	}
	for _, r := range rels {
		p := "components." + r.name
		ver := string(r.r.Version)
		switch {
		case strings.HasPrefix(ver, "v") && r.pattern.MatchString(ver[1:]):
			v.errf(p+".version", "write the %s version without the leading v: %q", r.name, ver[1:])
		case ver != "" && !r.pattern.MatchString(ver):
			v.errf(p+".version", "invalid %s version %q: expected a release version such as %s", r.name, ver, r.example)
		case ver != "":
			v.catalogVersion(r.name, p+".version", c)
		}
		if r.r.BaseURL != "" {
			v.url(p+".baseURL", r.r.BaseURL, true)
			if u, err := url.Parse(r.r.BaseURL); err == nil && (u.RawQuery != "" || u.Fragment != "") {
				v.errf(p+".baseURL", "baseURL must not have a query or fragment: file names are appended to its path")
			}
		}
		for _, arch := range slices.Sorted(maps.Keys(r.r.SHA256)) {
			kp := keyPath(p+".sha256", arch)
			if !knownArch(arch) {
				v.keyErrf(kp, "unknown architecture %q: expected %s", arch, strings.Join(Arches(), " or "))
				continue
			}
			v.digest(kp, r.r.SHA256[arch], 64)
		}
	}
	v.componentTargets(c)
}

// requirePin insists on a sha256 pin for a component whose upstream
// publishes nothing to check a download against: without one, nothing
// could verify it.
func (v *validator) requirePin(p string, r *Release, why string) {
	if len(r.SHA256) == 0 {
		v.errf(p, "%s: pin the tarball's SHA-256 for each architecture the node installs, e.g. sha256: {amd64: <64 hex digits>}", why)
	}
}

// catalogVersion checks a well-formed component version against what the
// catalog knows about the component's releases.
func (v *validator) catalogVersion(name, p string, c *Components) {
	var err error
	switch name {
	case "containerd":
		var bins []string
		if bins, err = containerdBinaries(string(c.Containerd.Version)); err == nil {
			v.names("components.containerd.binaries", "containerd binary", c.Containerd.Binaries, bins)
		}
	case "cni":
		_, err = cniDefaultPlugins(string(c.CNI.Version))
	case "gvisor":
		err = checkGVisorVersion(string(c.GVisor.Version))
	case "docker":
		if v, ok := parseSemver(string(c.Docker.Version)); ok && v.major < 20 {
			err = fmt.Errorf("Docker %s is not in the catalog, which knows 20.10 and later (the static tarballs with docker-init, docker-proxy and containerd-shim-runc-v2); install it with downloads:", c.Docker.Version)
		}
	}
	if err != nil {
		v.errf(p, "%v", err)
	}
}

// names checks a list of names against the known ones: no unknown name, no
// name twice.
func (v *validator) names(p, what string, list, known []string) {
	seen := map[string]bool{}
	for i, name := range list {
		ip := indexPath(p, i)
		switch {
		case !contains(known, name):
			msg := fmt.Sprintf("unknown %s %q", what, name)
			if s := suggest(name, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += fmt.Sprintf("; expected one of %s", strings.Join(known, ", "))
			}
			v.errf(ip, "%s", msg)
		case seen[name]:
			v.errf(ip, "%s %q is listed twice", what, name)
		}
		seen[name] = true
	}
}

// componentTargets claims the files every component installs, with the
// component's defaults applied, so that two components or a component and a
// download never install the same path. Targets that depend on an invalid
// version are skipped (the version is reported already).
func (v *validator) componentTargets(c *Components) {
	// claimIn claims dir/name for each name the component installs.
	claimIn := func(component, dir string, names ...string) {
		for _, n := range names {
			v.claimFor("components."+component+".installDir", "components."+component, path.Join(dir, n))
		}
	}
	if c.Containerd != nil {
		cd := defaulted(c.Containerd)
		bins := cd.Binaries
		if len(bins) == 0 {
			bins, _ = containerdBinaries(string(cd.Version))
		}
		claimIn("containerd", cd.InstallDir, bins...)
	}
	if c.Runc != nil {
		v.claimFor("components.runc.path", "components.runc", defaulted(c.Runc).Path)
	}
	if c.CNI != nil {
		cn := defaulted(c.CNI)
		plugins := cn.Plugins
		if len(plugins) == 0 {
			plugins, _ = cniDefaultPlugins(string(cn.Version))
		}
		claimIn("cni", cn.InstallDir, plugins...)
	}
	if c.GVisor != nil {
		g := defaulted(c.GVisor)
		claimIn("gvisor", g.InstallDir, "runsc")
		if *g.Shim {
			claimIn("gvisor", g.InstallDir, "containerd-shim-runsc-v1")
		}
	}
	if c.Crictl != nil {
		claimIn("crictl", defaulted(c.Crictl).InstallDir, "crictl")
	}
	if c.Docker != nil {
		d := defaulted(c.Docker)
		claimIn("docker", d.InstallDir, DockerBinaries...)
		if d.Containerd == "bundled" {
			for _, b := range DockerBundled {
				v.claimFor("components.docker.bundledDir", "components.docker", path.Join(d.BundledDir, b))
			}
		}
	}
	if c.CriDockerd != nil {
		claimIn("criDockerd", defaulted(c.CriDockerd).InstallDir, "cri-dockerd")
	}
	if c.Kata != nil {
		k := defaulted(c.Kata)
		claimIn("kata", k.InstallDir, kataMembers(k)...)
		for _, b := range kataBinaries {
			v.claimFor("components.kata.linkDir", "components.kata", path.Join(k.LinkDir, b))
		}
	}
}

// kata checks the kata component's own fields. Its release has no
// checksum file, so a pin is the only way to verify it.
func (v *validator) kata(k *KataComponent) {
	const p = "components.kata"
	v.targetPath(p+".installDir", k.InstallDir)
	v.targetPath(p+".linkDir", k.LinkDir)
	if len(k.SHA256) == 0 {
		ver := string(k.Version)
		if ver == "" {
			ver = "<version>"
		}
		v.errf(p+".sha256", "Kata Containers publishes no checksum file next to kata-static-<version>-<arch>.tar.zst, so nodeprov cannot verify it without a pin: set sha256 per architecture, e.g. sha256: {amd64: <sha256sum of kata-static-%s-amd64.tar.zst>}", ver)
	}
	for i, m := range k.Members {
		mp := indexPath(p+".members", i)
		v.member(mp, m)
		if strings.HasPrefix(path.Clean(strings.TrimPrefix(m, "./")), kataMemberPrefix) {
			v.errf(mp, "write members relative to opt/kata/: %q", strings.TrimPrefix(path.Clean(strings.TrimPrefix(m, "./")), kataMemberPrefix))
		}
	}
}

// links checks the symbolic links of a download: absolute link paths
// nodeprov may write, claimed like install targets, to absolute targets.
func (v *validator) links(p string, links map[string]string) {
	for _, l := range slices.Sorted(maps.Keys(links)) {
		lp := keyPath(p, l)
		v.targetPath(lp, l)
		v.claim(lp, l)
		switch t := links[l]; {
		case t == "":
			v.errf(lp, "link %s needs a target", l)
		case !strings.HasPrefix(t, "/"):
			v.errf(lp, "link target %q must be absolute (it is resolved inside the target root)", t)
		case strings.ContainsRune(t, 0):
			v.errf(lp, "link target contains a NUL byte")
		case t == l:
			v.errf(lp, "link %s points at itself", l)
		}
	}
}

// claim records that the entry at key path p installs target, and reports
// a target installed twice.
func (v *validator) claim(p, target string) { v.claimFor(p, p, target) }

// claimFor records that the spec entry who installs target; a conflict is
// reported at key path p (or its nearest ancestor in the file).
func (v *validator) claimFor(p, who, target string) {
	if target == "" || !strings.HasPrefix(target, "/") {
		return
	}
	if prev, dup := v.targets[target]; dup {
		if prev != who {
			v.errf(p, "%s is also installed by %s", target, prev)
		}
		return
	}
	v.targets[target] = who
}

var (
	semver        = lazyRegexp(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	semverPre     = lazyRegexp(`^[0-9]+\.[0-9]+\.[0-9]+(-rc\.?[0-9]+)?$`)
	gvisorVersion = lazyRegexp(`^20[0-9]{6}(\.[0-9]+)?$`)
)

// CNIPlugins lists the plugins shipped in the containernetworking/plugins
// release tarball.
var CNIPlugins = []string{
	"bandwidth", "bridge", "dhcp", "dummy", "firewall", "host-device", "host-local",
	"ipvlan", "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tap",
	"tuning", "vlan", "vrf",
}

func (v *validator) mirrors(ms []Mirror) {
	seen := map[string]int{}
	for i, m := range ms {
		p := indexPath("mirrors", i)
		v.url(p+".prefix", m.Prefix, false)
		v.url(p+".to", m.To, true)
		if j, dup := seen[m.Prefix]; dup && m.Prefix != "" {
			v.errf(p+".prefix", "prefix %q is already mirrored by mirrors[%d]", m.Prefix, j)
		}
		seen[m.Prefix] = i
	}
}

func (v *validator) keyrings(ks map[string]Keyring) {
	for name, k := range ks {
		p := keyPath("keyrings", name)
		if !dnsLabel().MatchString(name) {
			v.keyErrf(p, "invalid keyring name %q: use lower-case letters, digits and '-'", name)
		}
		switch {
		case k.Path == "" && k.Armored == "":
			v.errf(p, "keyring %q needs path or armored", name)
		case k.Path != "" && k.Armored != "":
			v.errf(p, "keyring %q sets both path and armored; use one", name)
		case k.Path != "":
			v.absPath(p+".path", k.Path)
		case !strings.Contains(k.Armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
			v.errf(p+".armored", "expected an armored OpenPGP public key block (-----BEGIN PGP PUBLIC KEY BLOCK-----)")
		}
	}
}

func (v *validator) tls(t *TLS) {
	v.absPath("tls.caFile", t.CAFile)
	if t.CA != "" {
		if _, err := ParseCAs([]byte(t.CA)); err != nil {
			v.errf("tls.ca", "%v", err)
		}
	}
}

// ParseCAs parses PEM CA certificates: at least one CERTIFICATE block, and
// nothing else but whitespace between blocks.
func ParseCAs(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, expected CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		return nil, fmt.Errorf("expected PEM certificates (-----BEGIN CERTIFICATE-----), found other text")
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
	}
	return certs, nil
}

// source checks how an artifact at p is fetched and verified: its URL,
// pinned digests, checksum file, signature and size cap.
func (v *validator) source(p string, d *Download, keyrings map[string]Keyring) {
	v.url(p+".url", d.URL, true)
	v.digest(p+".sha256", d.SHA256, 64)
	v.digest(p+".sha512", d.SHA512, 128)
	if d.SHA256 != "" && d.SHA512 != "" {
		v.errf(p, "set one of sha256 and sha512, not both")
	}
	if d.Checksum != nil {
		v.url(p+".checksum.url", d.Checksum.URL, true)
		v.signature(p+".checksum.signature", d.Checksum.Signature, keyrings, true)
	}
	v.signature(p+".signature", d.Signature, keyrings, false)
	if d.MaxSize < 0 {
		v.errf(p+".maxSize", "size must not be negative")
	}
}

// images checks the image archives: each verified like a download, and
// named by its file name in ImagesDir, which must be unique.
func (v *validator) images(imgs []Image, keyrings map[string]Keyring) {
	for i := range imgs {
		img := &imgs[i]
		p := indexPath("images", i)
		v.source(p, &Download{URL: img.URL, SHA256: img.SHA256, SHA512: img.SHA512, Checksum: img.Checksum,
			Signature: img.Signature, MaxSize: img.MaxSize}, keyrings)
		if base := urlBase(img.URL); base == "" || base == "." || base == "/" || base == ".." {
			v.errf(p+".url", "the URL's path must end in the archive's file name")
			continue
		}
		v.claim(p+".url", ImagePath(img))
	}
}

func (v *validator) downloads(ds []Download, keyrings map[string]Keyring) {
	for i, d := range ds {
		p := indexPath("downloads", i)
		v.source(p, &d, keyrings)
		switch {
		case d.Path == "" && d.Extract == nil:
			v.errf(p, "download needs path (install the file) or extract (install archive members)")
		case d.Path != "" && d.Extract != nil:
			v.errf(p, "set one of path and extract, not both")
		case d.Path != "":
			v.targetPath(p+".path", d.Path)
			v.claim(p+".path", d.Path)
		default:
			if d.Mode != "" {
				v.errf(p+".mode", "mode applies to path downloads; archive members keep their masked modes")
			}
			v.extract(p+".extract", d.Extract)
		}
		v.links(p+".links", d.Links)
	}
}

func (v *validator) extract(p string, e *Extract) {
	switch {
	case len(e.Files) == 0 && e.To == "":
		v.errf(p, "extract needs files (member: target) or to (a directory)")
	case len(e.Files) > 0 && e.To != "":
		v.errf(p, "set one of files and to, not both")
	case e.To != "":
		v.targetPath(p+".to", e.To)
		for i, m := range e.Include {
			v.member(indexPath(p+".include", i), m)
		}
	default:
		if len(e.Include) > 0 || e.Strip != 0 {
			v.errf(p, "include and strip apply to to:, not to files:")
		}
		for _, member := range slices.Sorted(maps.Keys(e.Files)) {
			mp := keyPath(p+".files", member)
			v.member(mp, member)
			v.targetPath(mp, e.Files[member])
			v.claim(mp, e.Files[member])
		}
	}
	if e.Strip < 0 || e.Strip > 16 {
		v.errf(p+".strip", "strip must be between 0 and 16")
	}
}

// member checks an archive member name as written in the spec.
func (v *validator) member(p, m string) {
	clean := path.Clean(strings.TrimPrefix(m, "./"))
	switch {
	case m == "" || strings.ContainsRune(m, 0):
		v.errf(p, "invalid archive member name %q", m)
	case strings.HasPrefix(m, "/"):
		v.errf(p, "archive member %q must be relative", m)
	case clean == ".." || strings.HasPrefix(clean, "../"):
		v.errf(p, "archive member %q leaves the archive root", m)
	}
}

func (v *validator) signature(p string, s *Signature, keyrings map[string]Keyring, clearsignedOK bool) {
	if s == nil {
		return
	}
	if s.URL == "" && !clearsignedOK {
		v.errf(p+".url", "a signature of the artifact needs url (a detached .asc or .sig)")
	} else if s.URL != "" {
		v.url(p+".url", s.URL, true)
	}
	v.keyringRef(p+".keyring", s.Keyring, keyrings)
}

// keyringRef checks that a keyring name refers to an entry in keyrings.
func (v *validator) keyringRef(p, name string, keyrings map[string]Keyring) {
	if name == "" {
		return
	}
	if _, ok := keyrings[name]; !ok {
		msg := fmt.Sprintf("keyring %q is not defined in keyrings", name)
		if sg := suggest(name, slices.Sorted(maps.Keys(keyrings))); sg != "" {
			msg += fmt.Sprintf("; did you mean %q?", sg)
		}
		v.errf(p, "%s", msg)
	}
}

func (v *validator) digest(p, d string, n int) {
	if d == "" {
		return
	}
	if len(d) != n || !hexDigits().MatchString(d) {
		v.errf(p, "invalid digest: expected %d lower-case hex characters, got %d characters", n, len(d))
	}
}

// url checks an absolute http, https (and, when fileOK, file) URL without
// credentials.
func (v *validator) url(p, s string, fileOK bool) {
	v.checkURL(p, s, fileOK, false)
}

// checkURL is url with a choice about credentials: proxy URLs may carry
// them (they end up in a mode 0640 drop-in), download URLs may not.
func (v *validator) checkURL(p, s string, fileOK, credsOK bool) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	if err != nil {
		v.errf(p, "invalid URL %q: %v", s, unwrapURLError(err))
		return
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			v.errf(p, "URL %q has no host", s)
		}
	case "file":
		if !fileOK {
			v.errf(p, "URL %q: expected an http or https URL", s)
		} else if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			v.errf(p, "file URL %q must be of the form file:///absolute/path", s)
		}
	case "oci":
		// An artifact source in an OCI registry (fetch.ParseOCI checks the
		// reference when it is used).
		if !fileOK {
			v.errf(p, "URL %q: expected an http or https URL", s)
		} else if u.Host == "" || strings.Trim(u.Path, "/") == "" || u.RawQuery != "" || u.Fragment != "" {
			v.errf(p, "oci URL %q: expected oci://host[:port]/repository[:tag][@sha256:digest]", s)
		}
	case "":
		v.errf(p, "URL %q has no scheme; expected https://…", s)
	default:
		v.errf(p, "URL %q: unsupported scheme %q (expected https, http, file or oci)", s, u.Scheme)
	}
	if u.User != nil && !credsOK {
		v.errf(p, "URL %q carries credentials, which would end up in logs and reports; use a mirror that needs none", redactURL(u))
	}
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// absPath checks an absolute, clean path without NUL bytes.
func (v *validator) absPath(p, s string) {
	switch {
	case s == "":
		return
	case strings.ContainsRune(s, 0):
		v.errf(p, "path contains a NUL byte")
	case !strings.HasPrefix(s, "/"):
		v.errf(p, "path %q must be absolute", s)
	case len(s) > maxPathLen:
		v.errf(p, "path is too long: %d bytes; Linux allows at most %d", len(s), maxPathLen)
	case path.Clean(s) != s:
		v.errf(p, "path %q is not clean; write %q", s, path.Clean(s))
	case s == "/":
		v.errf(p, "path must not be the root directory")
	default:
		for _, c := range strings.Split(s[1:], "/") {
			if len(c) > maxNameLen {
				v.errf(p, "path component %q is too long: %d bytes; Linux allows at most %d", c, len(c), maxNameLen)
				return
			}
		}
	}
}

// imageRef checks an image reference against the distribution reference
// grammar containerd parses it with: [host[:port]/]path[:tag][@digest],
// docker.io names normalized (pause:3.10 is docker.io/library/pause:3.10).
func (v *validator) imageRef(p, s string) {
	if s == "" {
		return
	}
	if _, err := reference.ParseNormalizedNamed(s); err != nil {
		v.errf(p, "invalid image reference %q: %v; expected [host[:port]/]path[:tag][@sha256:digest], e.g. registry.k8s.io/pause:3.10", s, err)
	}
}

// registryAuth checks one set of registry credentials: a user name with a
// password, or an identity token, each secret inline or from a file.
// Messages never quote a secret.
func (v *validator) registryAuth(p string, a *RegistryAuth) {
	if a == nil {
		return
	}
	hasPassword := a.Password != "" || a.PasswordFile != ""
	hasToken := a.IdentityToken != "" || a.IdentityTokenFile != ""
	switch {
	case a.Password != "" && a.PasswordFile != "":
		v.errf(p, "set one of password and passwordFile, not both")
	case a.IdentityToken != "" && a.IdentityTokenFile != "":
		v.errf(p, "set one of identityToken and identityTokenFile, not both")
	case hasPassword && hasToken:
		v.errf(p, "set username with password, or an identity token, not both")
	case hasPassword && a.Username == "":
		v.errf(p, "a password needs username")
	case a.Username != "" && !hasPassword:
		v.errf(p, "username %q needs password or passwordFile", a.Username)
	case !hasPassword && !hasToken:
		v.errf(p, "auth needs username with password (or passwordFile), or identityToken (or identityTokenFile)")
	}
	if strings.ContainsAny(a.Username, ":\x00\n\r") {
		v.errf(p+".username", "user name must not contain ':', NUL or line breaks (HTTP basic auth joins user:password)")
	}
	for key, s := range map[string]string{"password": a.Password, "identityToken": a.IdentityToken} {
		if strings.ContainsAny(s, "\x00\n\r") {
			v.errf(p+"."+key, "%s must not contain NUL or line breaks", key)
		}
	}
	v.absPath(p+".passwordFile", a.PasswordFile)
	v.absPath(p+".identityTokenFile", a.IdentityTokenFile)
}

// targetPath checks a path nodeprov writes: absPath, and not inside a
// kernel API filesystem. /proc, /sys and /dev are mounted over whatever an
// image root has there (a file written into the image is hidden at boot),
// and on a live root they are kernel interfaces, not files to converge.
func (v *validator) targetPath(p, s string) {
	v.absPath(p, s)
	for _, api := range []string{"/proc", "/sys", "/dev"} {
		if s != api && !strings.HasPrefix(s, api+"/") {
			continue
		}
		hint := "nodeprov writes files, not kernel interfaces"
		switch {
		case s == "/proc/sys" || strings.HasPrefix(s, "/proc/sys/"):
			key := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "/proc/sys"), "/"), "/", ".")
			hint = "set kernel parameters with kernel.sysctl"
			if key != "" {
				hint += fmt.Sprintf(" (%s: ...)", key)
			}
		case strings.HasPrefix(s, "/sys/module/"):
			hint = "load modules with kernel.modules and set their options in a file under /etc/modprobe.d"
		case api == "/dev":
			hint = "device nodes come from the kernel and udev; configure udev under /etc/udev/rules.d"
		}
		v.errf(p, "%s is inside %s, a kernel API filesystem: in an image root it is hidden at boot, on a live host it is a kernel interface; %s", s, api, hint)
		return
	}
}

// Linux limits: PATH_MAX (including the terminating NUL) and NAME_MAX.
const (
	maxPathLen = 4095
	maxNameLen = 255
)

func (v *validator) containerd(c *Containerd) {
	const p = "containerd"
	v.absPath(p+".root", c.Root)
	v.absPath(p+".state", c.State)
	v.absPath(p+".address", c.Address)
	v.imageRef(p+".sandboxImage", c.SandboxImage)
	if c.DefaultRuntime != "" && c.DefaultRuntime != "runc" {
		if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
			v.errf(p+".defaultRuntime", "runtime %q is not defined in containerd.runtimes", c.DefaultRuntime)
		}
	}
	for name, rt := range c.Runtimes {
		rp := keyPath(p+".runtimes", name)
		if !runtimeName().MatchString(name) {
			v.keyErrf(rp, "invalid runtime handler name %q: use lower-case letters, digits, '-' and '_'", name)
		}
		if rt.Type != "" && !runtimeType().MatchString(rt.Type) {
			v.errf(rp+".type", "invalid runtime type %q: expected a shim name such as io.containerd.runc.v2", rt.Type)
		}
		v.absPath(rp+".path", rt.Path)
		v.absPath(rp+".configPath", rt.ConfigPath)
		v.runtimeClass(rp, name, rt)
	}
	for host, reg := range c.Registries {
		rp := keyPath(p+".registries", host)
		if host != "_default" && !registryHost().MatchString(host) {
			v.keyErrf(rp, "invalid registry host %q: expected host or host:port, or _default", host)
		}
		if reg.Server != "" {
			v.url(rp+".server", reg.Server, false)
		}
		if reg.Auth != nil && host == "_default" {
			v.errf(rp+".auth", "credentials belong to one host, and _default applies to any: put auth on the registry (or the mirror) it is for")
		}
		v.registryAuth(rp+".auth", reg.Auth)
		hosts := map[string]int{}
		for i, m := range reg.Mirrors {
			mp := indexPath(rp+".mirrors", i)
			v.url(mp+".host", m.Host, false)
			if j, dup := hosts[m.Host]; dup {
				v.errf(mp+".host", "mirror %q is listed twice (also mirrors[%d]); containerd rejects duplicated hosts", m.Host, j)
			}
			hosts[m.Host] = i
			for k, capab := range m.Capabilities {
				if !contains([]string{"pull", "resolve", "push"}, capab) {
					v.errf(indexPath(mp+".capabilities", k), "invalid capability %q: expected pull, resolve or push", capab)
				}
			}
			v.absPath(mp+".ca", m.CA)
			v.registryAuth(mp+".auth", m.Auth)
		}
	}
	if c.Proxy != nil {
		v.checkURL(p+".proxy.http", c.Proxy.HTTP, false, true)
		v.checkURL(p+".proxy.https", c.Proxy.HTTPS, false, true)
		for i, np := range c.Proxy.NoProxy {
			if np == "" || strings.ContainsAny(np, " ,\n\"") {
				v.errf(indexPath(p+".proxy.noProxy", i), "invalid noProxy entry %q", np)
			}
		}
	}
	if _, err := c.Patch.Tree(); err != nil {
		if c.Patch.Map != nil {
			v.errf(p+".patch", "patch: %v", err)
		} else {
			v.errf(p+".patch", "patch is not valid TOML: %v", err)
		}
	}
	v.podNetwork(p+".cni", &c.CNI)
}

// podNetwork checks the CNI settings of a CRI.
func (v *validator) podNetwork(p string, c *PodNetwork) {
	if c.Subnet != "" {
		if _, _, err := net.ParseCIDR(c.Subnet); err != nil {
			v.errf(p+".subnet", "invalid subnet %q: expected CIDR notation such as 10.88.0.0/16", c.Subnet)
		}
	}
	v.targetPath(p+".binDir", c.BinDir)
	v.targetPath(p+".confDir", c.ConfDir)
}

// runtimeClass checks what a runtime handler gives its Kubernetes
// RuntimeClass (spec/runtimeclass.go) the way the API server would: the
// overhead's quantities, the node selector's label keys and values, and a
// handler name a RuntimeClass can carry.
func (v *validator) runtimeClass(p, name string, rt Runtime) {
	if rt.Overhead == nil && len(rt.NodeSelector) == 0 {
		return
	}
	if runtimeName().MatchString(name) && !dnsLabel().MatchString(name) {
		v.keyErrf(p, "runtime handler %q has overhead or nodeSelector, which go into a Kubernetes RuntimeClass, and a RuntimeClass handler must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	if o := rt.Overhead; o != nil {
		if o.CPU == "" && o.Memory == "" && !v.sink.failed[p+".overhead.cpu"] && !v.sink.failed[p+".overhead.memory"] {
			v.errf(p+".overhead", "overhead needs cpu, memory or both")
		}
		v.quantity(p+".overhead.cpu", o.CPU, "250m, 0.5 or 1")
		v.quantity(p+".overhead.memory", o.Memory, "160Mi or 1Gi")
	}
	for _, key := range slices.Sorted(maps.Keys(rt.NodeSelector)) {
		kp := keyPath(p+".nodeSelector", key)
		prefix, _, hasPrefix := strings.Cut(key, "/")
		switch {
		case !labelKey().MatchString(key):
			v.keyErrf(kp, "invalid label key %q: expected [prefix/]name, the name at most 63 letters, digits, '-', '_' and '.' starting and ending with a letter or digit, the prefix a DNS subdomain such as example.com", key)
		case hasPrefix && len(prefix) > 253:
			v.keyErrf(kp, "invalid label key: its prefix is %d characters; a DNS subdomain has at most 253", len(prefix))
		}
		if val := rt.NodeSelector[key]; !labelValue().MatchString(val) {
			v.errf(kp, "invalid label value %q: expected at most 63 letters, digits, '-', '_' and '.' starting and ending with a letter or digit, or an empty value", val)
		}
	}
}

// quantity checks a Kubernetes resource quantity that must not be
// negative.
func (v *validator) quantity(p string, q Quantity, examples string) {
	switch {
	case q == "":
	case strings.HasPrefix(string(q), "-") && resourceQuantity().MatchString(string(q[1:])):
		v.errf(p, "quantity %q is negative", q)
	case !resourceQuantity().MatchString(string(q)):
		v.errf(p, "invalid quantity %q: expected a Kubernetes quantity such as %s (a number, optionally with a suffix n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e3)", q, examples)
	}
}

var (
	resourceQuantity = lazyRegexp(mustPattern("quantity"))
	labelKey         = lazyRegexp(mustPattern("label-key"))
	labelValue       = lazyRegexp(mustPattern("label-value"))
)

var (
	runtimeName  = lazyRegexp(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	runtimeType  = lazyRegexp(`^[a-z0-9]+(\.[a-z0-9_-]+)+$`)
	registryHost = lazyRegexp(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)
)

func (v *validator) files(fs []File) {
	seen := map[string]int{}
	for i, f := range fs {
		p := indexPath("files", i)
		v.targetPath(p+".path", f.Path)
		if j, dup := seen[f.Path]; dup && f.Path != "" {
			v.errf(p+".path", "%s is also declared by files[%d]", f.Path, j)
		}
		seen[f.Path] = i
		if f.Owner != "" && !ownerSpec().MatchString(f.Owner) {
			v.errf(p+".owner", "invalid owner %q: expected user:group, user, or numeric ids", f.Owner)
		}
		switch f.Type {
		case "", "file":
			if f.Target != "" {
				v.errf(p+".target", "target applies to type symlink")
			}
			v.contents(p, f)
		case "directory":
			if f.Contents != "" || f.Encoding != "" || f.Target != "" {
				v.errf(p, "a directory takes no contents, encoding or target")
			}
		case "symlink":
			if f.Target == "" {
				v.errf(p, "a symlink needs target")
			}
			if f.Contents != "" || f.Encoding != "" || f.Mode != "" {
				v.errf(p, "a symlink takes no contents, encoding or mode")
			}
			if strings.ContainsRune(f.Target, 0) {
				v.errf(p+".target", "target contains a NUL byte")
			}
		}
	}
}

func (v *validator) contents(p string, f File) {
	switch f.Encoding {
	case "base64", "gzip+base64":
		if _, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Contents), "")); err != nil {
			v.errf(p+".contents", "contents are not valid base64: %v", err)
		}
	}
}

func (v *validator) units(us []Unit) {
	seen := map[string]int{}
	for i, u := range us {
		p := indexPath("units", i)
		if u.Name != "" && !unitName().MatchString(u.Name) {
			v.errf(p+".name", "invalid unit name %q: expected a name with a unit suffix such as .service", u.Name)
		}
		if j, dup := seen[u.Name]; dup && u.Name != "" {
			v.errf(p+".name", "unit %s is also declared by units[%d]", u.Name, j)
		}
		seen[u.Name] = i
		if u.Masked && (u.State == "started" || (u.Enabled != nil && *u.Enabled)) {
			v.errf(p, "a masked unit cannot be enabled or started")
		}
		dropins := map[string]bool{}
		for j, d := range u.Dropins {
			dp := indexPath(p+".dropins", j)
			if !strings.HasSuffix(d.Name, ".conf") || strings.ContainsAny(d.Name, "/\x00") || d.Name == ".conf" {
				v.errf(dp+".name", "invalid drop-in name %q: expected a file name ending in .conf", d.Name)
			}
			if dropins[d.Name] {
				v.errf(dp+".name", "drop-in %q is listed twice", d.Name)
			}
			dropins[d.Name] = true
		}
		for j, r := range u.RestartOn {
			v.absPath(indexPath(p+".restartOn", j), r)
		}
	}
}

func (v *validator) machineID(m *MachineID) {
	for i, id := range m.Forbidden {
		if !machineID().MatchString(id) {
			v.errf(indexPath("machineID.forbidden", i), "invalid machine id %q: expected 32 lower-case hex characters", id)
		}
	}
	if f := m.Fleet; f != nil {
		v.absPath("machineID.fleet.kubeconfig", f.Kubeconfig)
		if f.NodeName != "" && (len(f.NodeName) > 253 || !nodeNameRE().MatchString(f.NodeName)) {
			v.errf("machineID.fleet.nodeName", "invalid Node name %q: expected a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)", f.NodeName)
		}
	}
}

func (v *validator) preflight(p *Preflight) {
	for i, name := range p.Ignore {
		if !probeName().MatchString(name) {
			v.errf(indexPath("preflight.ignore", i), "invalid probe name %q", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
