# Shared by tools/run, tools/test and tools/bench: packages, builds.  Source it; don't run it.
CVX_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Installs the Debian packages listed in tools/packages.txt that are missing.
cvx_install_packages() {
    local missing=() pkg
    while read -r pkg; do
        pkg=${pkg%%#*}
        pkg=${pkg//[[:space:]]/}
        [ -n "$pkg" ] || continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done <"$CVX_TOP/tools/packages.txt"
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "tools: installing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "tools: run as root, or install: apt-get install ${missing[*]}" >&2
            return 1
        }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq || return 1
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || return 1
}

# cvx_build DIR [cmake options...]: configures (once) and builds into DIR.
cvx_build() {
    local dir=$1
    shift
    cmake -S "$CVX_TOP" -B "$dir" -G Ninja "$@" >/dev/null || return 1
    ninja -C "$dir" || return 1
}
