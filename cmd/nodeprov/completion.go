package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nodeprov/nodeprov/spec"
	"github.com/nodeprov/nodeprov/stages"
)

// shells are the shells `nodeprov completion` writes scripts for.
var shells = []string{"bash", "zsh"}

func runCompletion(ctx context.Context, args []string, s ioSet) int {
	fs := newFlags("completion", "completion bash|zsh",
		"  source <(nodeprov completion bash)              # bash, this shell\n"+
			"  nodeprov completion bash > /etc/bash_completion.d/nodeprov\n"+
			"  nodeprov completion zsh > \"${fpath[1]}/_nodeprov\"  # zsh, with compinit", s)
	pos, code, ok := positional(fs, args, 1)
	if !ok {
		return code
	}
	cmds, err := completionSpecs(ctx)
	if err != nil {
		fmt.Fprintf(s.err, "completion: %v\n", err)
		return exitFailure
	}
	switch pos[0] {
	case "bash":
		writeBashCompletion(s.out, cmds)
	case "zsh":
		writeZshCompletion(s.out, cmds)
	default:
		fmt.Fprintf(s.err, "completion: unknown shell %q: expected %s\n", pos[0], strings.Join(shells, " or "))
		return exitInvalid
	}
	return exitOK
}

// Values lists the values of --output for completion.
func (o *outputFlag) Values() []string { return []string{"text", "json"} }

// compCommand is what the completion scripts know about one command.
type compCommand struct {
	name, summary string
	flags         []compFlag
	// args completes positional arguments: "file", or words.
	argFiles bool
	argWords []string
}

// compFlag is one flag of a command.
// args is what the command's positional arguments complete to, as the
// scripts' case tables carry it: "file", a word list, or "".
func (c compCommand) args() string {
	switch {
	case c.argFiles:
		return "file"
	case c.argWords != nil:
		return strings.Join(c.argWords, " ")
	}
	return ""
}

type compFlag struct {
	// word is the flag as typed: --name, or -x for one-letter names.
	word, usage string
	// takesValue is false for boolean flags.
	takesValue bool
	// values are the allowed values; list means a comma-separated list of
	// them. dir and file complete paths.
	values     []string
	list       bool
	dir, file  bool
	valueLabel string
}

// completionSpecs reads every command's real flag set: each command is run
// with --help and an ioSet whose onFlags hook records the flag set it
// builds. Every command parses its flags before it does anything, so this
// runs nothing else (output goes nowhere).
func completionSpecs(ctx context.Context) ([]compCommand, error) {
	var out []compCommand
	for _, c := range commands() {
		var fs *flag.FlagSet
		var synopsis string
		s := ioSet{in: strings.NewReader(""), out: io.Discard, err: io.Discard,
			onFlags: func(syn string, f *flag.FlagSet) {
				if fs == nil {
					fs, synopsis = f, syn
				}
			}}
		if code := c.run(ctx, []string{"--help"}, s); code != exitOK || fs == nil {
			return nil, fmt.Errorf("command %s did not show its flags with --help (exit %d)", c.name, code)
		}
		cc := compCommand{name: c.name, summary: c.summary, argFiles: strings.Contains(synopsis, "spec.yaml")}
		switch c.name {
		case "completion":
			cc.argWords = shells
		case "fleet":
			cc.argWords = fleetSubcommands
		}
		fs.VisitAll(func(f *flag.Flag) { cc.flags = append(cc.flags, compFlagOf(f)) })
		out = append(out, cc)
	}
	return out, nil
}

// compFlagOf describes a flag. Values come from the flag's type (a Value
// with a Values method) or, for plain string flags, from the sources the
// commands check them against.
func compFlagOf(f *flag.Flag) compFlag {
	cf := compFlag{word: "--" + f.Name, usage: firstSentence(f.Usage), takesValue: true}
	if len(f.Name) == 1 {
		cf.word = "-" + f.Name
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		cf.takesValue = false
		return cf
	}
	cf.valueLabel, _ = flag.UnquoteUsage(f)
	if v, ok := f.Value.(interface{ Values() []string }); ok {
		cf.values = v.Values()
	}
	switch f.Name {
	case "live":
		cf.values = []string{"auto", "yes", "no"} // parseLive
	case "stages":
		cf.values = stages.Order
	case "arch":
		cf.values = spec.Arches()
	case "root", "cache", "to", "out":
		cf.dir = true
	case "lock-file", "binary-path", "kubeconfig":
		cf.file = true
	}
	cf.list = cf.values != nil && strings.Contains(f.Usage, "comma-separated")
	return cf
}

func firstSentence(s string) string {
	if i := strings.IndexAny(s, ";("); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// valueFlags are the flags of c that take a value.
func (c compCommand) valueFlags() []string {
	var out []string
	for _, f := range c.flags {
		if f.takesValue {
			out = append(out, f.word)
		}
	}
	return out
}

func (c compCommand) flagWords() []string {
	var out []string
	for _, f := range c.flags {
		out = append(out, f.word)
	}
	return out
}

// valueCases groups the flags of all commands by how their values
// complete: the key is a shell case pattern "cmd:--flag|cmd:--flag", the
// value the action. Sorted for deterministic output.
type valueCase struct {
	patterns []string
	kind     string // "words", "list", "dir", "file"
	words    []string
}

// valueActions are one shell's ways to complete a flag's value: from
// words (space-separated), from a comma-separated list of them, a
// directory or a file.
type valueActions struct {
	words, list func(words string) string
	dir, file   string
}

// writeValueCases writes a case arm per group of flags whose values
// complete alike.
func writeValueCases(w io.Writer, cmds []compCommand, a valueActions) {
	for _, vc := range valueCases(cmds) {
		var action string
		switch vc.kind {
		case "words":
			action = a.words(strings.Join(vc.words, " "))
		case "list":
			action = a.list(strings.Join(vc.words, " "))
		case "dir":
			action = a.dir
		case "file":
			action = a.file
		}
		fmt.Fprintf(w, "        %s) %s ;;\n", strings.Join(vc.patterns, "|"), action)
	}
}

func valueCases(cmds []compCommand) []valueCase {
	byKey := map[string]*valueCase{}
	var keys []string
	for _, c := range cmds {
		for _, f := range c.flags {
			var vc valueCase
			switch {
			case !f.takesValue:
				continue
			case f.list:
				vc = valueCase{kind: "list", words: f.values}
			case f.values != nil:
				vc = valueCase{kind: "words", words: f.values}
			case f.dir:
				vc = valueCase{kind: "dir"}
			case f.file:
				vc = valueCase{kind: "file"}
			default:
				continue
			}
			key := vc.kind + " " + strings.Join(vc.words, " ")
			if byKey[key] == nil {
				byKey[key] = &vc
				keys = append(keys, key)
			}
			byKey[key].patterns = append(byKey[key].patterns, c.name+":"+f.word)
		}
	}
	sort.Strings(keys)
	out := make([]valueCase, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out
}

func commandNames(cmds []compCommand) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.name)
	}
	return out
}

// writeBashCompletion writes a bash (4.0 or later) completion script.
func writeBashCompletion(w io.Writer, cmds []compCommand) {
	fmt.Fprint(w, `# bash completion for nodeprov. Generated by "nodeprov completion bash" from
# the commands' own flag sets. Load it with
#   source <(nodeprov completion bash)
# or install it as /etc/bash_completion.d/nodeprov.

# _nodeprov_words completes the current word from a list.
_nodeprov_words() {
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$_nodeprov_cur")
}

# _nodeprov_list completes the last item of a comma-separated list.
_nodeprov_list() {
    local head=""
    [[ $_nodeprov_cur == *,* ]] && head=${_nodeprov_cur%,*},
    mapfile -t COMPREPLY < <(compgen -P "$head" -W "$1" -- "${_nodeprov_cur##*,}")
    compopt -o nospace 2>/dev/null
}

_nodeprov_paths() {
    mapfile -t COMPREPLY < <(compgen "$1" -- "$_nodeprov_cur")
    compopt -o filenames 2>/dev/null
}

_nodeprov() {
    local _nodeprov_cur=${COMP_WORDS[COMP_CWORD]}
    local prev="" cmd="" flag="" head=""
    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
    # "-flag" and "--flag" are the same flag to Go's flag package.
    [[ $prev == -[!-]?* ]] && prev=-$prev
    COMPREPLY=()
    if (( COMP_CWORD == 1 )); then
        case $_nodeprov_cur in
        -*) _nodeprov_words "--help --version" ;;
`)
	fmt.Fprintf(w, "        *) _nodeprov_words %q ;;\n", strings.Join(append(commandNames(cmds), "help"), " "))
	fmt.Fprint(w, `        esac
        return 0
    fi
    cmd=${COMP_WORDS[1]}
    if [[ $cmd == help ]]; then
        (( COMP_CWORD == 2 )) && _nodeprov_words "`+strings.Join(commandNames(cmds), " ")+`"
        return 0
    fi

    local flags="" valueflags="" args=""
    case $cmd in
`)
	for _, c := range cmds {
		args := c.args()
		fmt.Fprintf(w, "    %s) flags=%q valueflags=%q args=%q ;;\n", c.name,
			strings.Join(c.flagWords(), " "), " "+strings.Join(c.valueFlags(), " ")+" ", args)
	}
	fmt.Fprint(w, `    *) return 0 ;;
    esac

    # Which flag's value is being completed: "--flag value", "--flag=value"
    # (split at "=" by bash's COMP_WORDBREAKS, or not).
    if [[ $_nodeprov_cur == -*=* ]]; then
        flag=${_nodeprov_cur%%=*} head=$flag=
        _nodeprov_cur=${_nodeprov_cur#*=}
    elif [[ $_nodeprov_cur == = && $prev == -* ]]; then
        flag=$prev _nodeprov_cur=""
    elif [[ $prev == = ]] && (( COMP_CWORD > 2 )); then
        flag=${COMP_WORDS[COMP_CWORD-2]}
    elif [[ $valueflags == *" $prev "* ]]; then
        flag=$prev
    fi
    [[ $flag == -[!-]?* ]] && flag=-$flag

    if [[ -n $flag ]]; then
        case $cmd:$flag in
`)
	writeValueCases(w, cmds, valueActions{
		words: func(ws string) string { return fmt.Sprintf("_nodeprov_words %q", ws) },
		list:  func(ws string) string { return fmt.Sprintf("_nodeprov_list %q", ws) },
		dir:   "_nodeprov_paths -d",
		file:  "_nodeprov_paths -f",
	})
	fmt.Fprint(w, `        esac
        if [[ -n $head ]]; then
            local i
            for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=$head${COMPREPLY[i]}; done
        fi
        return 0
    fi

    case $_nodeprov_cur in
    -*) _nodeprov_words "$flags --help" ;;
    *)
        case $args in
        "") ;;
        file) _nodeprov_paths -f ;;
        *) _nodeprov_words "$args" ;;
        esac
        ;;
    esac
    return 0
}

complete -F _nodeprov nodeprov
`)
}

// zshQuote quotes s for zsh in single quotes.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeZshCompletion writes a zsh completion script: a file for $fpath
// (named _nodeprov) or a script to source after compinit.
func writeZshCompletion(w io.Writer, cmds []compCommand) {
	fmt.Fprint(w, `#compdef nodeprov
# zsh completion for nodeprov. Generated by "nodeprov completion zsh" from
# the commands' own flag sets. Install it as _nodeprov in a directory of
# $fpath, or load it with: source <(nodeprov completion zsh) (after compinit).

# _nodeprov_describe offers name:description pairs.
_nodeprov_describe() {
    local tag=$1; shift
    local -a items
    items=("$@")
    _describe -t "$tag" "nodeprov $tag" items
}

_nodeprov() {
    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} cmd flag
    if (( CURRENT == 2 )); then
        if [[ $cur == -* ]]; then
            _nodeprov_describe options '--help:show usage' '--version:print the version'
        else
            _nodeprov_describe commands \
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "                %s \\\n", zshQuote(c.name+":"+c.summary))
	}
	fmt.Fprint(w, `                'help:show the usage of a command'
        fi
        return
    fi
    cmd=${words[2]}
    if [[ $cmd == help ]]; then
        (( CURRENT == 3 )) && compadd -- `+strings.Join(commandNames(cmds), " ")+`
        return
    fi

    local -a flags
    local valueflags="" args=""
    case $cmd in
`)
	for _, c := range cmds {
		args := c.args()
		var items []string
		for _, f := range c.flags {
			items = append(items, zshQuote(f.word+":"+f.usage))
		}
		fmt.Fprintf(w, "    %s)\n        flags=(%s)\n        valueflags=%s args=%s ;;\n", zshQuote(c.name),
			strings.Join(items, " "), zshQuote(" "+strings.Join(c.valueFlags(), " ")+" "), zshQuote(args))
	}
	fmt.Fprint(w, `    *) return ;;
    esac

    # "-flag" and "--flag" are the same flag to Go's flag package.
    [[ $prev == -[^-]?* ]] && prev=-$prev
    if [[ $cur == -*=* ]]; then
        flag=${cur%%=*}
        compset -P '*='
    elif [[ $valueflags == *" $prev "* ]]; then
        flag=$prev
    fi
    [[ $flag == -[^-]?* ]] && flag=-$flag

    if [[ -n $flag ]]; then
        case $cmd:$flag in
`)
	writeValueCases(w, cmds, valueActions{
		words: func(ws string) string { return "compadd -- " + ws },
		// The items before the last comma stay; complete the last one.
		list: func(ws string) string { return "compset -P '*,'; compadd -S '' -- " + ws },
		dir:  "_files -/",
		file: "_files",
	})
	fmt.Fprint(w, `        esac
        return
    fi

    if [[ $cur == -* ]]; then
        _nodeprov_describe options $flags '--help:show usage'
        return
    fi
    case $args in
    '') ;;
    file) _files ;;
    *) compadd -- ${=args} ;;
    esac
}

if [[ $funcstack[1] == _nodeprov ]]; then
    # Autoloaded from $fpath: this file is the body of _nodeprov.
    _nodeprov "$@"
else
    compdef _nodeprov nodeprov
fi
`)
}
