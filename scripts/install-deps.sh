#!/bin/sh
# install-deps.sh GROUP... - make sure the Debian packages listed in scripts/deps.txt for the given
# groups are installed.  Prints what it does.  On systems without apt-get it names what is missing
# and exits 1, so the build stops with a clear message instead of a compiler error.
set -eu
here=$(dirname "$0")
groups=" $* "
wanted=""
while read -r pkg group rest; do
    case "$pkg" in ''|'#'*) continue ;; esac
    case "$groups" in *" $group "*) wanted="$wanted $pkg" ;; esac
done < "$here/deps.txt"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
    for p in $wanted; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
    done
else
    echo "install-deps: this is not a Debian-like system; make sure these (or your system's equivalents) are installed:$wanted" >&2
    exit 0
fi
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages:$missing (no apt-get here: install them with your package manager)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "install-deps: missing packages:$missing; run as root: apt-get install$missing" >&2
        exit 1
    fi
fi
echo "install-deps: installing$missing (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
    echo "install-deps: apt-get update" >&2
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends $missing
fi
