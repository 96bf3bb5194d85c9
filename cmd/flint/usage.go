package main

// How the CLI reports usage errors: every one (an unknown flag, a flag
// without its value, a bad value, a stray argument, an unknown command) is a
// usageError, which run prints as one line on stderr with exit code 2.
// urfave/cli's own reporting would print the whole usage text to stdout
// first; only `flint help [command]` and --help print that.

import (
	"errors"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// quietUsage makes the commands report flag errors through onUsageError
// and gives them no `help` subcommand (`flint help CMD` is the one help
// command, so `flint run help` is a stray argument like any other word).
func quietUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		c.HideHelpCommand = true
		quietUsage(c.Subcommands)
	}
}

// nameCommands makes every error of cmds' actions start with the name
// of the command ("run: --cpus 0: ..."), as their flag-parsing errors do
// (onUsageError), whichever check found it: those shared by several
// commands (buildConfig's, for run and firecracker) cannot name it
// themselves. An error that names it already is left as it is, and so is
// a jailed flint's exit code.
func nameCommands(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if act := cmd.Action; act != nil {
			cmd.Action = func(c *cli.Context) error { return named(c.Command.Name, act(c)) }
		}
	}
}

func named(cmd string, err error) error {
	var ec exitCode
	if err == nil || errors.As(err, &ec) || strings.HasPrefix(err.Error(), cmd+": ") {
		return err
	}
	return usageError{cmd + ": " + err.Error()}
}

// helpCommand is `flint help [command]`: the full usage text on stdout.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "list the commands, or print one command's flags (flint help run)",
		ArgsUsage: "[command]",
		Action: func(c *cli.Context) error {
			root := c.Lineage()[1] // the app's context
			switch {
			case c.NArg() == 0:
				return cli.ShowAppHelp(root)
			case c.NArg() > 1:
				return usagef("help: unexpected argument %q (try: flint help)", c.Args().Get(1))
			case c.App.Command(c.Args().First()) == nil:
				return usagef("help: unknown command %q (try: flint help)", c.Args().First())
			}
			return cli.ShowCommandHelp(root, c.Args().First())
		},
	}
}

// helpHint is the command that prints the usage text for c's command.
func helpHint(c *cli.Context, sub bool) string {
	if !sub {
		return "flint help"
	}
	return "flint help " + c.Command.Name
}

var badFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value (".*") for (?:flag )?-(\S+): (.*)$`)

// onUsageError is the cli.OnUsageErrorFunc of the app and every command:
// it turns the flag package's parse errors into one line in the CLI's own
// style, naming the command and the flag as the user would write it.
func onUsageError(c *cli.Context, err error, sub bool) error {
	msg := err.Error()
	where := ""
	if sub {
		where = c.Command.Name + ": "
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return usagef("%sunknown flag %s (try: %s)", where, dashed(name), helpHint(c, sub))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return usagef("%s%s needs a value", where, dashed(name))
	}
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		return usagef("%s%s %s: %s", where, dashed(m[2]), m[1], wantValue(c.Command.Flags, m[2], m[3]))
	}
	return usageError{where + msg}
}

// dashed writes a flag name the way it is usually typed: -h, --kernel.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// wantValue says what a flag takes, for a value the flag package refused
// with reason ("parse error", "value out of range").
func wantValue(flags []cli.Flag, name, reason string) string {
	if reason == "value out of range" {
		return "out of range"
	}
	switch lookupFlag(flags, name).(type) {
	case *cli.IntFlag, *cli.Int64Flag:
		return "want a whole number"
	case *cli.Uint64Flag:
		return "want a whole number, 0 or more"
	case *cli.DurationFlag:
		return "want a duration such as 90s or 5m"
	case *cli.BoolFlag:
		return "want true or false"
	}
	return reason
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// noArgs is the check of a command that takes no positional arguments.
func noArgs(c *cli.Context) error {
	if c.NArg() == 0 {
		return nil
	}
	return usagef("%s: unexpected argument %q (try: flint help %s)", c.Command.Name, c.Args().First(), c.Command.Name)
}

// afterDashDash returns the arguments that follow a "--" ending c's flags
// (`flint run --kernel K -- CMD ARGS...`), or nil when the flags did not
// end with "--". args is the whole command line, program name first.
// c.Args() alone cannot tell `-- CMD` from a stray CMD: the flag package
// drops the "--".
func afterDashDash(c *cli.Context, args []string) []string {
	cmd, _ := dashDash(c, args)
	return cmd
}

// dashDash is afterDashDash that also reports whether the flags ended
// with "--" at all: `flint run --kernel K --` has one and no command.
func dashDash(c *cli.Context, args []string) (cmd []string, given bool) {
	if cmd, dd := splitFlags(c.Command.Flags, commandArgs(c, args)); dd {
		return cmd, true
	}
	return nil, false
}

// commandArgs is what follows the command's name in args, the whole
// command line (program name first, then the global flags): its own
// flags and what comes after them. It is nil when args has no command.
func commandArgs(c *cli.Context, args []string) []string {
	if len(args) == 0 {
		return nil
	}
	rest, _ := splitFlags(c.App.Flags, args[1:])
	if len(rest) == 0 {
		return nil
	}
	return rest[1:]
}

// splitFlags finds where Go's flag package (which urfave/cli uses) stops
// parsing args: at the first argument that is not a flag or a flag's value,
// or just after a "--", which it reports.
func splitFlags(flags []cli.Flag, args []string) (rest []string, dashDash bool) {
	for i := 0; i < len(args); i++ {
		s := args[i]
		if s == "--" {
			return args[i+1:], true
		}
		if len(s) < 2 || s[0] != '-' {
			return args[i:], false
		}
		name := strings.TrimPrefix(s[1:], "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f, ok := lookupFlag(flags, name).(cli.DocGenerationFlag); ok && f.TakesValue() {
			i++ // its value, whatever it looks like
		}
	}
	return nil, false
}

// repeatedFlag returns the first flag of flags given more than once in
// args (a command's arguments, up to the first that is no flag or a
// "--"), as typed, or "" when none is. Only the repeatable flags, slices
// (--net, --share, --env), may come more than once: the flag package would
// keep the last value of any other and drop the first without a word, as
// `--cpus 4 ... --cpus 1` in a long script line.
func repeatedFlag(flags []cli.Flag, args []string) string {
	seen := map[cli.Flag]bool{}
	for i := 0; i < len(args); i++ {
		s := args[i]
		if s == "--" || len(s) < 2 || s[0] != '-' {
			return ""
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(s[1:], "-"), "=")
		f := lookupFlag(flags, name)
		if f == nil {
			continue // the flag package reports it
		}
		if v, ok := f.(cli.DocGenerationFlag); ok && v.TakesValue() && !hasValue {
			i++ // its value, whatever it looks like
		}
		if _, slice := f.(*cli.StringSliceFlag); slice {
			continue
		}
		if seen[f] {
			return dashed(name)
		}
		seen[f] = true
	}
	return ""
}

// refuseRepeatedFlags makes each of cmds refuse a flag given twice
// (repeatedFlag) before it runs; args is the whole command line, as
// commandArgs takes it.
func refuseRepeatedFlags(cmds []*cli.Command, args func() []string) {
	for _, cmd := range cmds {
		cmd.Before = func(c *cli.Context) error {
			if f := repeatedFlag(c.Command.Flags, commandArgs(c, args())); f != "" {
				return usagef("%s: %s given twice: give each flag once", c.Command.Name, f)
			}
			return nil
		}
	}
}

// refuseEmpty refuses each of the string flags names given with an empty
// value, which would otherwise read as the flag not given at all
// (--initrd "" as no initrd, --exit-marker "" as no marker).
func refuseEmpty(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.IsSet(n) && c.String(n) == "" {
			return usagef("%s: --%s: empty value", c.Command.Name, n)
		}
	}
	return nil
}
