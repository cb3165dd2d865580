# Sourced by scripts/setup and scripts/test: installs Debian packages with apt-get when what
# they provide is missing and this runs as root; otherwise says what to install.
# Usage: apt_ensure WHAT CHECK HINT PACKAGE...
#   WHAT     what the packages are for, in the messages
#   CHECK    a command that succeeds when the packages are already there
#   HINT     what to tell a user who is not root (how to install them elsewhere)
apt_ensure() {
    local what=$1 check=$2 hint=$3
    shift 3
    if eval "$check" >/dev/null 2>&1; then
        return 0
    fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing $* with apt-get ($what)" >&2
        apt-get install -y -qq "$@" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
    else
        echo "$what: missing; $hint" >&2
        return 1
    fi
}
