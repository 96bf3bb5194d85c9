package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flintvm/flint/internal/hostfile"
)

// Module is one kernel module file to load into the guest.
type Module struct {
	// Name is the module's name with '-' written as '_' ("virtio_net").
	Name string
	// Path is the host path of its .ko, .ko.xz, .ko.zst or .ko.gz file.
	Path string
}

// DefaultModules are the modules command mode needs in a stock distribution
// kernel, where every virtio driver is a module: both virtio transports,
// the network, console and vsock devices, virtio-fs and the overlay that
// makes a read-only shared root writable.
var DefaultModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_net", "virtio_console",
	"virtiofs", "overlay", "vmw_vsock_virtio_transport",
}

// Errors of module resolution; each is wrapped with what and where.
var (
	// ErrNoModuleTree: no /lib/modules/VERSION directory for the kernel.
	ErrNoModuleTree = errors.New("no kernel module tree")
	// ErrUnknownModule: a module that is neither in the tree nor built in.
	ErrUnknownModule = errors.New("unknown kernel module")
	// ErrModuleDeps: dependencies that cannot be ordered (a cycle) or a
	// malformed modules.dep.
	ErrModuleDeps = errors.New("bad kernel module dependencies")
)

// ModuleName returns the module name for a name or a module file path:
// the base name without its .ko[.xz|.zst|.gz] suffix, '-' written as '_'
// (the kernel treats both alike).
func ModuleName(s string) string {
	s = trimModuleSuffix(s[strings.LastIndexByte(s, '/')+1:])
	return strings.ReplaceAll(s, "-", "_")
}

// trimModuleSuffix returns p without its .ko[.xz|.zst|.gz] suffix.
func trimModuleSuffix(p string) string {
	for _, suf := range moduleSuffixes {
		if strings.HasSuffix(p, suf) {
			return p[:len(p)-len(suf)]
		}
	}
	return p
}

// FindTree returns the module tree of kernel release under root:
// root/lib/modules/RELEASE or root/usr/lib/modules/RELEASE, the first that
// is a directory. The error says where it looked and that --modules DIR
// names a tree explicitly.
func FindTree(root, release string) (string, error) {
	if release == "" || release == "." || release == ".." || strings.ContainsAny(release, "/\x00") {
		return "", fmt.Errorf("%w: kernel release %q is not a directory name", ErrNoModuleTree, release)
	}
	var looked []string
	for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
		p := filepath.Join(root, dir, release)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return p, nil
		}
		looked = append(looked, p)
	}
	return "", fmt.Errorf("%w for kernel %s: looked in %s; give the kernel's module directory (its /lib/modules/%s) with --modules DIR",
		ErrNoModuleTree, release, strings.Join(looked, " and "), release)
}

// Resolve returns the module files to load, in load order (every module
// after the modules it depends on), for the modules wanted from the module
// tree dir (a /lib/modules/VERSION directory). Dependencies come from
// modules.dep when the tree has one, otherwise from each module's own
// .modinfo "depends=" field (a tree unpacked from a distribution package
// has no modules.dep: that is generated at install time). Modules listed in
// modules.builtin are built into the kernel and need nothing. A module
// found nowhere is an error naming it and the tree.
func Resolve(dir string, wanted []string) ([]Module, error) {
	return resolve(dir, wanted, true)
}

// depSource answers, for a module name, its file and the names of the
// modules it depends on.
type depSource interface {
	lookup(name string) (path string, deps []string, ok bool, err error)
	where() string // for errors: what was searched
}

func resolve(dir string, wanted []string, useModulesDep bool) ([]Module, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrNoModuleTree, dir)
	}
	builtin, err := readBuiltin(dir)
	if err != nil {
		return nil, err
	}
	var src depSource
	if depFile := filepath.Join(dir, "modules.dep"); useModulesDep && fileExists(depFile) {
		src, err = readModulesDep(dir, depFile)
	} else {
		src, err = scanTree(dir)
	}
	if err != nil {
		return nil, err
	}
	r := resolver{src: src, builtin: builtin, state: map[string]int{}}
	if IsBuildTree(dir) {
		// Only for messages: what the tree's configuration says of a
		// module it did not build.
		r.config, _ = ReadKconfig(filepath.Join(dir, ".config"))
	}
	for _, w := range wanted {
		name := ModuleName(w)
		if name == "" || name != strings.ReplaceAll(w, "-", "_") {
			return nil, fmt.Errorf("%w %q: not a module name", ErrUnknownModule, w)
		}
		if err := r.visit(name, nil); err != nil {
			return nil, err
		}
	}
	for _, m := range r.order {
		if !fileExists(m.Path) {
			return nil, fmt.Errorf("%w %q: %s lists %s, which does not exist", ErrUnknownModule, m.Name, src.where(), m.Path)
		}
	}
	return r.order, nil
}

type resolver struct {
	src     depSource
	builtin map[string]bool
	config  *Kconfig       // a build tree's .config, or nil
	state   map[string]int // 1: being visited, 2: in order
	order   []Module
}

// visit appends name, after its dependencies, to the load order. chain is
// the path of dependencies that led here, for error messages.
func (r *resolver) visit(name string, chain []string) error {
	switch r.state[name] {
	case 2:
		return nil
	case 1:
		return fmt.Errorf("%w: dependency cycle %s -> %s", ErrModuleDeps, strings.Join(chain, " -> "), name)
	}
	if r.builtin[name] {
		r.state[name] = 2
		return nil
	}
	path, deps, ok, err := r.src.lookup(name)
	if err != nil {
		return err
	}
	if !ok {
		needed := ""
		if len(chain) > 0 {
			needed = fmt.Sprintf(" (needed by %s)", strings.Join(chain, " <- "))
		}
		return fmt.Errorf("%w %q%s: not in %s and not built in (modules.builtin)%s", ErrUnknownModule, name, needed, r.src.where(), r.configSays(name))
	}
	r.state[name] = 1
	chain = append(chain, name)
	for _, d := range deps {
		if err := r.visit(ModuleName(d), chain); err != nil {
			return err
		}
	}
	r.state[name] = 2
	r.order = append(r.order, Module{Name: name, Path: path})
	return nil
}

// configSays is what the build tree's .config says of module name, for
// an error: "" when there is none or it does not know the module.
func (r *resolver) configSays(name string) string {
	if r.config == nil {
		return ""
	}
	sym, val, known := r.config.Module(name)
	switch {
	case !known:
		return ""
	case val == "":
		return fmt.Sprintf("; %s is not set in its .config", sym)
	default:
		return fmt.Sprintf("; its .config has %s=%s: is the build finished?", sym, val)
	}
}

// depFile is a parsed modules.dep: for each module its path and its
// dependencies, in load order (modules.dep lists them the other way round).
type depFile struct {
	file string
	mods map[string]depEntry
}

type depEntry struct {
	path string
	deps []string
}

// readModulesDep reads and parses the tree's modules.dep, at most
// maxListFile bytes (a distribution's is under 1 MiB).
func readModulesDep(dir, file string) (*depFile, error) {
	data, err := readBounded(file)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %v", ErrModuleDeps, err)
	}
	return parseModulesDep(dir, file, bytes.NewReader(data))
}

// parseModulesDep parses modules.dep (named file, of the tree dir) from r.
func parseModulesDep(dir, file string, r io.Reader) (*depFile, error) {
	df := &depFile{file: file, mods: map[string]depEntry{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok || mod == "" {
			return nil, fmt.Errorf("%w: %s:%d: no \"module: dependencies\" line", ErrModuleDeps, file, lineNo)
		}
		deps := strings.Fields(rest)
		slices.Reverse(deps)
		df.mods[ModuleName(mod)] = depEntry{path: treePath(dir, mod), deps: deps}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrModuleDeps, file, err)
	}
	return df, nil
}

// treePath resolves a path from modules.dep: relative to the tree, or
// absolute as depmod writes paths outside it.
func treePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func (d *depFile) lookup(name string) (string, []string, bool, error) {
	e, ok := d.mods[name]
	return e.path, e.deps, ok, nil
}

func (d *depFile) where() string { return d.file }

// treeScan finds modules in a tree without modules.dep and reads each
// one's dependencies from its .modinfo section when it is needed. It looks
// a module up in modules.order first (shipped with the kernel package: it
// lists every in-tree module, so no walk of thousands of files is needed)
// and walks the whole tree only for a module that list does not lead to
// (out-of-tree modules under updates/ or extra/, a tree without the list).
//
// In a build tree (IsBuildTree) modules.order is the whole answer: a module
// it does not list was not built (a .ko found elsewhere is a stale one of
// an earlier configuration), and its lines may name the module's object
// (x.o, since Linux 6.3) for the x.ko beside it.
//
// A modules.order line that leads out of the tree (an absolute path, or
// ../ above its top) is never followed: the module it names is an error.
type treeScan struct {
	dir     string
	build   bool              // a build tree: no walk
	order   map[string]string // name -> path from modules.order, suffix as listed
	outside map[string]string // name -> a modules.order line outside the tree
	walked  map[string]string // name -> path found by walking, once walked
	dec     moduleDecoder
}

func scanTree(dir string) (*treeScan, error) {
	t := &treeScan{dir: dir, build: IsBuildTree(dir), order: map[string]string{}, outside: map[string]string{}}
	data, err := readListFile(dir, "modules.order")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNoModuleTree, err)
	}
	t.readOrder(data)
	return t, nil
}

// readOrder takes the module paths of a modules.order (data) into t.order,
// the first line for each name; lines outside the tree into t.outside.
func (t *treeScan) readOrder(data []byte) {
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if obj, ok := strings.CutSuffix(line, ".o"); ok && t.build {
			line = obj + ".ko"
		}
		if !isModuleFile(line) {
			continue
		}
		list := t.order
		if !filepath.IsLocal(line) {
			list = t.outside
		}
		if name := ModuleName(line); list[name] == "" {
			list[name] = line
		}
	}
}

// maxWalkEntries bounds the files and directories a walk of a module tree
// visits (a distribution's has about 6,000): --modules naming a home
// directory or / is an error, not a walk of the whole filesystem.
var maxWalkEntries = 200_000

// walk indexes every module file of the tree by name.
func (t *treeScan) walk() error {
	t.walked = map[string]string{}
	seen := 0
	// WalkDir does not follow a symlink, even as its root (a tree is often
	// one: a cache's link to an unpacked package).
	root, err := filepath.EvalSymlinks(t.dir)
	if err == nil {
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if seen++; seen > maxWalkEntries {
				return fmt.Errorf("more than %d files and directories: not a module tree (give the kernel's /lib/modules/RELEASE directory)", maxWalkEntries)
			}
			if err != nil || !d.Type().IsRegular() || !isModuleFile(d.Name()) {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			// depmod's default search order puts updates/ first.
			name, updates := ModuleName(d.Name()), strings.HasPrefix(rel, "updates"+string(filepath.Separator))
			if _, dup := t.walked[name]; !dup || updates {
				t.walked[name] = filepath.Join(t.dir, rel)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("%w: reading module tree %s: %v", ErrNoModuleTree, t.dir, err)
	}
	return nil
}

func isModuleFile(name string) bool {
	for _, suf := range moduleSuffixes {
		if strings.HasSuffix(name, suf) && len(name) > len(suf) {
			return true
		}
	}
	return false
}

func (t *treeScan) where() string {
	if t.build {
		return "build tree " + t.dir + " (its modules.order)"
	}
	return "module tree " + t.dir
}

// find returns the file of module name: where modules.order says, with any
// of the module suffixes (a list may name x.ko for a shipped x.ko.xz), or
// else where a walk of the tree found it. A build tree's list may name
// the tree's x.ko as kernel/x.ko (Linux before 5.3 wrote it so).
func (t *treeScan) find(name string) (string, bool, error) {
	if rel := t.order[name]; rel != "" {
		places := []string{rel}
		if old, ok := strings.CutPrefix(rel, "kernel/"); ok && t.build {
			places = append(places, old)
		}
		for _, rel := range places {
			stem := filepath.Join(t.dir, trimModuleSuffix(rel))
			for _, suf := range moduleSuffixes {
				if fileExists(stem + suf) {
					return stem + suf, true, nil
				}
			}
		}
	} else if line := t.outside[name]; line != "" {
		return "", false, fmt.Errorf("%w %q: %s lists it as %s, outside the tree: not loaded (give a tree whose modules.order names its own files)",
			ErrUnknownModule, name, filepath.Join(t.dir, "modules.order"), line)
	}
	if t.build {
		return "", false, nil
	}
	if t.walked == nil {
		if err := t.walk(); err != nil {
			return "", false, err
		}
	}
	p, ok := t.walked[name]
	return p, ok, nil
}

func (t *treeScan) lookup(name string) (string, []string, bool, error) {
	p, ok, err := t.find(name)
	if !ok || err != nil {
		return "", nil, ok, err
	}
	deps, err := t.modinfoDepends(p)
	return p, deps, true, err
}

// modinfoDepends returns the "depends=" list of the module file at p.
func (t *treeScan) modinfoDepends(p string) ([]string, error) {
	var ef *elf.File
	var err error
	if compression(p) == "" {
		var f *os.File
		if f, err = hostfile.OpenInput(p, os.O_RDONLY, hostfile.Regular); err != nil {
			return nil, fmt.Errorf("%w %v", ErrBadModule, err)
		}
		defer f.Close()
		ef, err = elf.NewFile(f)
	} else {
		data, derr := t.dec.read(p)
		if derr != nil {
			return nil, derr
		}
		ef, err = elf.NewFile(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrBadModule, p, err)
	}
	defer ef.Close()
	info, err := modinfo(ef)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrBadModule, p, err)
	}
	var deps []string
	for _, kv := range info {
		if v, ok := strings.CutPrefix(kv, "depends="); ok {
			for d := range strings.SplitSeq(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, d)
				}
			}
		}
	}
	return deps, nil
}

// modinfo returns the key=value strings of a module's .modinfo section
// (NUL-separated, with runs of NULs as padding).
func modinfo(ef *elf.File) ([]string, error) {
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	if sec.Size > 1<<20 {
		return nil, fmt.Errorf(".modinfo section of %d bytes", sec.Size)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo section: %v", err)
	}
	var out []string
	for s := range strings.SplitSeq(string(data), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
