"""The completion scripts: click's ``ShellComplete`` classes for bash, zsh and fish, each with the
script imgtool's shells source (``imgtool completion SHELL``, or ``_IMGTOOL_COMPLETE=SHELL_source``).

The scripts start from click's own and speak click's protocol (the ``COMP_WORDS``/``COMP_CWORD``
click reads, the ``type,value`` lines it writes), with what imgtool's references need:

- bash splits the word being completed at the characters in ``COMP_WORDBREAKS``,
  ``:`` among them: ``oci:DIR:TAG`` reaches the completion function as five words,
  and readline replaces only the text after the last colon. ``_imgtool_completion_words``
  rejoins the pieces (those not separated by whitespace on the command line) before asking
  imgtool, and the reply loop trims the part bash keeps from each reply.
- In bash and zsh, a candidate that ends in ``/`` or ``:`` (a directory, a transport
  prefix) gets no trailing space, so completion can go on into the directory or the
  tag. fish does this by itself; its script is click's.

Both ends of the protocol are kept here (``source_template`` and ``format_completion``), so a
change in click's scripts cannot change imgtool's without a change to this file.
"""

from __future__ import annotations

from typing import Any, ClassVar

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
    _resolve_context,
    _resolve_incomplete,
    add_completion_class,
)

_BASH_SOURCE = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response

    local -a words
    local cword prefix
    %(complete_func)s_words
    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$prefix"}")
        fi
    done

    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[/:] ]]; then
        compopt -o nospace
    fi

    return 0
}

# bash splits the current word at the characters of COMP_WORDBREAKS (':' among them), so
# oci:DIR:TAG arrives as oci, :, DIR, :, TAG.
# Rejoin the pieces that no whitespace separates on the command line (words, cword), and
# find the part of the current word that bash keeps, to trim it from replies (prefix).
%(complete_func)s_words() {
    local line="${COMP_LINE:-${COMP_WORDS[*]}}" rest piece i
    words=()
    for ((i = 0; i <= COMP_CWORD && i < ${#COMP_WORDS[@]}; i++)); do
        piece="${COMP_WORDS[i]}"
        rest="${line#"${line%%%%[![:space:]]*}"}"
        if ((i > 0)) && [[ ${#rest} -eq ${#line} ]]; then
            words[${#words[@]}-1]+="$piece"
        else
            words+=("$piece")
        fi
        line="${rest:${#piece}}"
    done
    cword=$((${#words[@]} - 1))
    piece="${COMP_WORDS[COMP_CWORD]}"
    if [[ -z "${piece//["$COMP_WORDBREAKS"]/}" ]]; then
        piece=""
    fi
    prefix="${words[cword]:0:${#words[cword]}-${#piece}}"
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

_ZSH_SOURCE = """\
#compdef %(prog_name)s

%(complete_func)s() {
    local -a completions
    local -a completions_nospace
    local -a completions_with_descriptions
    local -a response
    (( ! $+commands[%(prog_name)s] )) && return 1

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \
%(complete_var)s=zsh_complete %(prog_name)s)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            if [[ "$descr" == "_" ]]; then
                if [[ "$key" == */ || "$key" == *: ]]; then
                    completions_nospace+=("$key")
                else
                    completions+=("$key")
                fi
            else
                completions_with_descriptions+=("$key":"$descr")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi

    if [ -n "$completions_nospace" ]; then
        compadd -U -S '' -V unsorted -a completions_nospace
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    %(complete_func)s "$@"
else
    # eval/source/. command, register function for later
    compdef %(complete_func)s %(prog_name)s
fi
"""

_FISH_SOURCE = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split "," $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments \
"(%(complete_func)s)";
"""


class _OptionValues(ShellComplete):
    """click resolves the context from the words before the one being completed; when the last of
    them is an option waiting for its value, click's parser stops there and the arguments before it
    are lost (``ctx.params`` has no image to complete ``--platform`` from). The context for an
    option's value is resolved from the words without that option."""

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem[str]]:
        ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, args)
        target, incomplete = _resolve_incomplete(ctx, args, incomplete)
        if isinstance(target, click.Option) and args and args[-1] in (*target.opts, *target.secondary_opts):
            ctx = _resolve_context(self.cli, self.ctx_args, self.prog_name, args[:-1])
        return target.shell_complete(ctx, incomplete)


@add_completion_class
class Bash(_OptionValues, BashComplete):
    source_template: ClassVar[str] = _BASH_SOURCE

    def format_completion(self, item: CompletionItem[Any]) -> str:
        return f"{item.type},{item.value}"  # the loop above reads type and value at the first comma


@add_completion_class
class Zsh(_OptionValues, ZshComplete):
    source_template: ClassVar[str] = _ZSH_SOURCE

    def format_completion(self, item: CompletionItem[str]) -> str:
        """Three lines, read as ``type key descr``; ``_`` for no help. A value with help goes to
        ``_describe``, which splits value from help at the first unescaped colon: its colons are
        escaped, and only then (``compadd`` takes the others as they are)."""
        help_ = item.help or "_"
        value = item.value.replace(":", r"\:") if help_ != "_" else item.value
        return f"{item.type}\n{value}\n{help_}"


@add_completion_class
class Fish(_OptionValues, FishComplete):
    source_template: ClassVar[str] = _FISH_SOURCE

    def format_completion(self, item: CompletionItem[str]) -> str:
        """``type,value``, and a tab and the help (on one line) when there is help."""
        if item.help:
            help_ = item.help.replace("\n", "\\n").replace("\t", " ")
            return f"{item.type},{item.value}\t{help_}"
        return f"{item.type},{item.value}"


SHELL_CLASSES: dict[str, type[ShellComplete]] = {cls.name: cls for cls in (Bash, Zsh, Fish)}
