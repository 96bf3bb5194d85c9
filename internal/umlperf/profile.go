package main

// Reading `perf script` call chains and naming UML's frames.

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// symtab is a sorted /proc/kallsyms: each symbol's start address.
type symtab struct {
	addr []uint64
	name []string
}

// readKallsyms reads /proc/kallsyms lines ("ADDR TYPE NAME [MODULE]");
// zero addresses (a kernel that hides them) are an error, as nothing
// could be named.
func readKallsyms(r io.Reader) (*symtab, error) {
	type sym struct {
		a uint64
		n string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %d: address %q: %w", line, f[0], err)
		}
		if a == 0 {
			continue
		}
		syms = append(syms, sym{a, f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kallsyms: %w", err)
	}
	if len(syms) == 0 {
		return nil, fmt.Errorf("kallsyms: no symbol with an address (was kptr_restrict set when it was read?)")
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].a < syms[j].a })
	t := &symtab{addr: make([]uint64, len(syms)), name: make([]string, len(syms))}
	for i, s := range syms {
		t.addr[i], t.name[i] = s.a, s.n
	}
	return t, nil
}

// lookup names the symbol at or before a; ok is false below the first
// or past the last symbol's next 1 MiB (not UML's code).
func (t *symtab) lookup(a uint64) (string, bool) {
	i := sort.Search(len(t.addr), func(i int) bool { return t.addr[i] > a }) - 1
	if i < 0 || a-t.addr[i] >= 1<<20 {
		return "", false
	}
	return t.name[i], true
}

// namer turns one frame of a `perf script` call chain into a name:
// "uml:F" for UML's kernel (frames in the executable, at base plus their
// file-relative address, or in UML's module area, which perf cannot map),
// "k:F" for the host kernel, "F" (or the library's name) for the rest.
type namer struct {
	syms *symtab
	exe  string // the UML executable's base name, as perf prints its path
	base uint64 // its load address minus file offset
}

func (n *namer) name(ip uint64, sym, dso string) string {
	switch {
	case strings.HasSuffix(dso, "/"+n.exe) || dso == n.exe:
		if s, ok := n.syms.lookup(n.base + ip); ok {
			return "uml:" + s
		}
	case dso == "[kernel.kallsyms]":
		return "k:" + sym
	case sym == "[unknown]":
		if s, ok := n.syms.lookup(ip); ok {
			return "uml:" + s
		}
	}
	if sym == "[unknown]" && dso != "" && dso != "[unknown]" {
		return "[" + dso[strings.LastIndex(dso, "/")+1:] + "]"
	}
	return sym
}

// profile counts, per name, the samples it appears in (children) and the
// samples it is the leaf of (self).
type profile struct {
	samples  int
	children map[string]int
	self     map[string]int
}

// window selects samples by time (seconds, perf's clock); to 0: no end.
type window struct{ from, to float64 }

func (w window) holds(t float64) bool { return t >= w.from && (w.to == 0 || t <= w.to) }

// parseScript reads `perf script -F comm,time,ip,sym,dso` output: a
// header line per sample ("COMM TIME:"), its frames indented below
// ("ADDR SYM (DSO)"), a blank line after. Samples of other commands or
// outside w are skipped.
func parseScript(r io.Reader, comm string, w window, n *namer) (*profile, error) {
	p := &profile{children: map[string]int{}, self: map[string]int{}}
	var frames []string
	keep := false
	flush := func() {
		if keep && len(frames) > 0 {
			p.samples++
			p.self[frames[0]]++
			seen := make(map[string]bool, len(frames))
			for _, f := range frames {
				if !seen[f] {
					seen[f] = true
					p.children[f]++
				}
			}
		}
		frames, keep = frames[:0], false
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.TrimSpace(text) == "":
			flush()
		case text[0] != ' ' && text[0] != '\t':
			flush()
			f := strings.Fields(text)
			if len(f) < 2 {
				return nil, fmt.Errorf("perf script line %d: a sample header wants COMM TIME: %q", line, text)
			}
			t, err := strconv.ParseFloat(strings.TrimSuffix(f[len(f)-1], ":"), 64)
			if err != nil {
				return nil, fmt.Errorf("perf script line %d: time %q: %w", line, f[len(f)-1], err)
			}
			keep = f[0] == comm && w.holds(t)
		case keep:
			name, err := frameName(text, n)
			if err != nil {
				return nil, fmt.Errorf("perf script line %d: %w", line, err)
			}
			frames = append(frames, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	flush()
	return p, nil
}

// frameName parses one frame line: "ADDR SYM (DSO)", SYM possibly with
// spaces and a "+0xOFF" suffix.
func frameName(text string, n *namer) (string, error) {
	text = strings.TrimSpace(text)
	sp := strings.IndexByte(text, ' ')
	if sp < 0 {
		sp = len(text)
	}
	ip, err := strconv.ParseUint(text[:sp], 16, 64)
	if err != nil {
		return "", fmt.Errorf("frame address %q: %w", text[:sp], err)
	}
	rest := strings.TrimSpace(text[sp:])
	// A mapped file deleted since (UML's memory file: its guest's
	// processes and modules run from it) ends " (deleted))".
	rest = strings.Replace(rest, " (deleted))", ")", 1)
	sym, dso := rest, ""
	if i := strings.LastIndex(rest, " ("); i >= 0 && strings.HasSuffix(rest, ")") {
		sym, dso = rest[:i], rest[i+2:len(rest)-1]
	}
	if i := strings.LastIndex(sym, "+0x"); i > 0 {
		sym = sym[:i]
	}
	if sym == "" {
		sym = "[unknown]"
	}
	return n.name(ip, sym, dso), nil
}

// write prints the top names by children: "children% self% name".
func (p *profile) write(w io.Writer, top int) error {
	names := make([]string, 0, len(p.children))
	for s := range p.children {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := names[i], names[j]
		if p.children[a] != p.children[b] {
			return p.children[a] > p.children[b]
		}
		return a < b
	})
	if top > 0 && len(names) > top {
		names = names[:top]
	}
	if _, err := fmt.Fprintf(w, "samples=%d\nchildren%%  self%%  symbol\n", p.samples); err != nil {
		return err
	}
	for _, s := range names {
		pct := func(k int) float64 { return 100 * float64(k) / float64(p.samples) }
		if _, err := fmt.Fprintf(w, "%8.1f %6.1f  %s\n", pct(p.children[s]), pct(p.self[s]), s); err != nil {
			return err
		}
	}
	return nil
}
