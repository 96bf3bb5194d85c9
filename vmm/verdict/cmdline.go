package verdict

import "bytes"

// PrintkTime reports what a kernel booted with cmdline does about printk
// timestamps: set says the command line gives printk.time a value the
// kernel takes, on what that value is. Like Linux, it reads the arguments
// up to a lone "--" (the rest are init's), undoes their double quotes, and
// takes the last printk.time that parses as a bool (printk.time alone is
// on; a value that does not parse leaves the earlier one, as the kernel's
// "Setting param failed" does). With set false the kernel's
// CONFIG_PRINTK_TIME decides. A caller that builds the command line gives
// the scanner Limits{Unstamped: set && !on}.
func PrintkTime(cmdline string) (on, set bool) {
	for args := skipSpaces(cmdline); args != ""; {
		var param, val string
		var hasVal bool
		param, val, hasVal, args = nextArg(args)
		if !hasVal && param == "--" {
			break
		}
		if param != "printk.time" {
			continue
		}
		if !hasVal {
			val = "1"
		}
		if b, ok := kstrtobool(val); ok {
			on, set = b, true
		}
	}
	return on, set
}

// nextArg is Linux's next_arg (lib/cmdline.c): the first argument of
// args, split at its first '=' (hasVal), without the quotes it removes,
// and the arguments after it. args starts with no space.
func nextArg(args string) (param, val string, hasVal bool, rest string) {
	inQuote, quoted := false, false
	if args[0] == '"' {
		args = args[1:]
		inQuote, quoted = true, true
	}
	i, equals := 0, 0
	for ; i < len(args); i++ {
		if isSpace(args[i]) && !inQuote {
			break
		}
		if equals == 0 && args[i] == '=' {
			equals = i
		}
		if args[i] == '"' {
			inQuote = !inQuote
		}
	}
	rest = skipSpaces(args[i:])
	// The kernel ends strings by writing NULs into the argument: at the
	// '=' and at a closing quote (once, for the value's quote or for the
	// argument's).
	arg := []byte(args[:i])
	vstart := -1
	if equals > 0 {
		arg[equals] = 0
		vstart = equals + 1
		if vstart < len(arg) && arg[vstart] == '"' {
			vstart++
			if arg[i-1] == '"' {
				arg[i-1] = 0
			}
		}
	}
	if quoted && i > 0 && arg[i-1] == '"' {
		arg[i-1] = 0
	}
	cstr := func(b []byte) string {
		if j := bytes.IndexByte(b, 0); j >= 0 {
			b = b[:j]
		}
		return string(b)
	}
	if vstart < 0 {
		return cstr(arg), "", false, rest
	}
	return cstr(arg), cstr(arg[min(vstart, len(arg)):]), true, rest
}

func isSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

func skipSpaces(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

// kstrtobool is Linux's (lib/kstrtox.c), which bool parameters use: the
// first byte says it, or "on"/"off" the first two. Kernels before 6.0 do
// not know e and d (enable, disable) and keep the earlier value: the
// scanner then reads the console as unstamped, which can count a
// program's line as the kernel's but never misses the kernel's.
func kstrtobool(s string) (v, ok bool) {
	if s == "" {
		return false, false
	}
	switch s[0] {
	case 'e', 'E', 'y', 'Y', 't', 'T', '1':
		return true, true
	case 'd', 'D', 'n', 'N', 'f', 'F', '0':
		return false, true
	case 'o', 'O':
		if len(s) > 1 {
			switch s[1] {
			case 'n', 'N':
				return true, true
			case 'f', 'F':
				return false, true
			}
		}
	}
	return false, false
}
