_imgtool_completion() {
    local IFS=$'\n'
    local response

    local -a words
    local cword prefix
    _imgtool_completion_words
    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword _IMGTOOL_COMPLETE=bash_complete $1)

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
_imgtool_completion_words() {
    local line="${COMP_LINE:-${COMP_WORDS[*]}}" rest piece i
    words=()
    for ((i = 0; i <= COMP_CWORD && i < ${#COMP_WORDS[@]}; i++)); do
        piece="${COMP_WORDS[i]}"
        rest="${line#"${line%%[![:space:]]*}"}"
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

_imgtool_completion_setup() {
    complete -o nosort -F _imgtool_completion imgtool
}

_imgtool_completion_setup;
