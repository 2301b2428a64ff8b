#!/usr/bin/env bash
# Fetches (once) and caches a real OpenSSH server for the SSH remediation tests, from Debian's
# packages: `apt-get download` (no root needed) of openssh-server and of the shared libraries it
# needs that this machine lacks (libwrap0 on Debian 12), unpacked with `dpkg-deb -x`.
# Nothing is installed system-wide. Prints the directory on stdout; progress goes to stderr.
# The cache lives per user and per version, outside the repository:
#   ${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/bins/openssh-<version>/
# Run the server as  LD_LIBRARY_PATH=<dir>/usr/lib/x86_64-linux-gnu <dir>/usr/sbin/sshd ...
# (tests/support/sshd.rs does that; it also creates the privilege-separation user when root).
set -euo pipefail

CACHE_ROOT=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
BINS=$CACHE_ROOT/bins

log() { printf '[sshd-bins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

candidate() {
  apt-cache policy openssh-server 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2; exit}'
}

# Any complete earlier extraction, newest first: used when apt cannot tell the version.
cached_any() {
  local d
  while IFS= read -r d; do
    if [[ -x $d/usr/sbin/sshd && -e $d/.complete ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done < <(printf '%s\n' "$BINS"/openssh-* | sort -rV)
  return 1
}

VERSION=$(candidate || true)
if [[ -z $VERSION ]]; then
  if dir=$(cached_any); then
    log "apt knows no openssh-server version; reusing $dir"
    printf '%s\n' "$dir"
    exit 0
  fi
  if [[ $(id -u) -eq 0 ]]; then
    log "apt has no package lists yet: apt-get update"
    apt-get update -qq >&2
    VERSION=$(candidate || true)
  fi
  if [[ -z $VERSION ]]; then
    log "apt-cache knows no openssh-server package (run 'apt-get update' as root first)"
    exit 1
  fi
fi

DIR=$BINS/openssh-${VERSION#*:}
if [[ -x $DIR/usr/sbin/sshd && -e $DIR/.complete ]]; then
  printf '%s\n' "$DIR"
  exit 0
fi

# The shared libraries (lib*) that openssh-server needs and this machine does not have,
# followed through their own library dependencies.
missing_libs() {
  local -A seen=()
  local queue=(openssh-server) pkg dep
  while ((${#queue[@]})); do
    pkg=${queue[0]}
    queue=("${queue[@]:1}")
    for dep in $(apt-cache depends "$pkg" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^lib/ {print $2}'); do
      [[ -n ${seen[$dep]:-} ]] && continue
      seen[$dep]=1
      if ! dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed'; then
        printf '%s\n' "$dep"
        queue+=("$dep")
      fi
    done
  done
}

mapfile -t LIBS < <(missing_libs)
log "fetching openssh-server $VERSION${LIBS[*]:+ and ${LIBS[*]}} (apt-get download)"
mkdir -p "$BINS"
TMP=$(mktemp -d "$BINS/.openssh.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# As root, apt downloads as its sandbox user '_apt', which cannot write into this private
# temporary directory: download as root instead (what apt falls back to anyway, with a warning).
SANDBOX=()
[[ $(id -u) -eq 0 ]] && SANDBOX=(-o APT::Sandbox::User=root)
(cd "$TMP" && apt-get download -q "${SANDBOX[@]}" "openssh-server=$VERSION" "${LIBS[@]}" >&2)

mkdir -p "$TMP/root"
for deb in "$TMP"/*.deb; do
  dpkg-deb -x "$deb" "$TMP/root"
done
[[ -x $TMP/root/usr/sbin/sshd ]] || { log "no usr/sbin/sshd in the packages"; exit 1; }
touch "$TMP/root/.complete"

# An incomplete earlier attempt is replaced; a concurrent run that finished first wins.
[[ -e $DIR/.complete ]] || rm -rf "$DIR"
mv -T "$TMP/root" "$DIR" 2>/dev/null || [[ -e $DIR/.complete ]] || { log "cannot move the files to $DIR"; exit 1; }
log "sshd ready in $DIR"
printf '%s\n' "$DIR"
