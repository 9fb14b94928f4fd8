#!/usr/bin/env bash
# Install NVIDIA Nsight Systems (the nsys CLI and what `nsys profile/export/stats` need) into a
# private folder, without root and without touching the machine's apt setup.
# ../shared/nsys/README.md says why and what the layout is; `--help` says how.
set -euo pipefail

NSYS_VERSION=2023.4.4.54
DEB_VERSION=2023.4.4.54~12.4.1-2
KEYRING=${PROFKIT_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
APT_ETC=${PROFKIT_APT_ETC:-/etc/apt}   # where the machine's sources are read (tests point it elsewhere)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAINPID=$$

usage() {
  cat <<EOF
Usage:
  scripts/install_nsys.sh [--prefix DIR] [--archive FILE.tar.xz] [--cache DIR] [--force]
  scripts/install_nsys.sh --from-archive FILE.tar.xz [--prefix DIR] [--archive FILE.tar.xz] [--force]
  scripts/install_nsys.sh --from-nsight-compute NCU_DIR [--libs DIR] [--prefix DIR] [--cache DIR] [--force]

Installs NVIDIA Nsight Systems into PREFIX with NVIDIA's layout:
  PREFIX/target-linux-x64/nsys   the CLI (profile, export, stats)
  PREFIX/host-linux-x64/         QdstrmImporter, libexporter.so and their libraries, reports/, rules/
  PREFIX/syslib/                 shared libraries the machine may lack (put it on LD_LIBRARY_PATH)
  PREFIX/VERSION, PREFIX/SOURCE  the installed version and how it was installed
Run it as: LD_LIBRARY_PATH=PREFIX/syslib PREFIX/target-linux-x64/nsys ...

Modes:
  (default)       download Debian trixie non-free's nsight-systems and
                  nsight-systems-target $DEB_VERSION, and bookworm's libssh-4 and
                  libpfm4 (with bookworm-security's updates), by a private 'apt-get download'
                  (no root needed; the machine's apt setup is left alone), then keep only the
                  parts the CLI needs.
  --from-archive FILE
                  install from a tar.xz whose top folder is nsys/ (as written by --archive).
  --from-nsight-compute NCU_DIR
                  set up the Nsight Systems CLI shipped inside Nsight Compute
                  (e.g. /opt/nvidia/nsight-compute/2025.3.1): copies NCU_DIR/host/target-linux-x64,
                  links host-linux-x64 to NCU_DIR/host/linux-desktop-glibc_2_11_3-x64 and puts
                  libdw.so.1 + libelf.so.1 in syslib/ (from --libs DIR, else Debian bookworm's
                  libdw1/libelf1).

Options:
  --prefix DIR    where to install (default: $ROOT/.tools/nsys)
  --archive FILE  afterwards, write a tar.xz of the install (top folder nsys/) to carry to
                  machines without network (not with --from-nsight-compute)
  --cache DIR     keep downloaded .debs here; present ones are not downloaded again
                  (default: \${XDG_CACHE_HOME:-\$HOME/.cache}/profkit/nsys-debs)
  --libs DIR      folder holding libdw.so.1 and libelf.so.1 (--from-nsight-compute only)
  --force         reinstall even if PREFIX already has this version
  -h, --help      show this help

Environment:
  PROFKIT_DEBIAN_MIRROR  Debian mirror URI to download from (default: the first .../debian URI
                         of the machine's own apt sources)
  PROFKIT_DEBIAN_SECURITY_MIRROR
                         the same for bookworm-security (default: the first .../debian-security
                         URI there; none: no security updates for the bookworm libraries)
  PROFKIT_DEBIAN_KEYRING the keyring that verifies the package lists
                         (default: /usr/share/keyrings/debian-archive-keyring.gpg)
  PROFKIT_APT_INSECURE=1 if the Debian archive keyring cannot verify the package lists,
                         download without verification ([trusted=yes]) instead of failing

An existing install of the same version is kept (exit 0) unless --force is given.
EOF
}

say() { printf 'install_nsys: %s\n' "$*" >&2; }
die() {
  if [ "${SOFT_DIE:-0}" = 1 ]; then # inside try_soft: the caller reports the failure
    say "failed: $*"
  else
    printf 'Error: %s\n' "$*" >&2
  fi
  exit 1
}
usage_error() {
  printf 'Error: %s\n' "$*" >&2
  exit 2
}

# ---------------------------------------------------------------- options
PREFIX="$ROOT/.tools/nsys"
ARCHIVE_OUT=""
CACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/profkit/nsys-debs"
FROM_ARCHIVE=""
FROM_NCU=""
LIBS=""
FORCE=0
MODE=download

need_arg() { [ "$2" -ge 2 ] || usage_error "$1 needs a value; see --help"; }
while [ $# -gt 0 ]; do
  opt=$1
  if [[ $opt == --*=* ]]; then # --opt=value
    set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
    opt=$1
  fi
  case $opt in
    -h | --help)
      usage
      exit 0
      ;;
    --prefix) need_arg "$1" $#; PREFIX=$2; shift 2 ;;
    --archive) need_arg "$1" $#; ARCHIVE_OUT=$2; shift 2 ;;
    --cache) need_arg "$1" $#; CACHE=$2; shift 2 ;;
    --from-archive) need_arg "$1" $#; FROM_ARCHIVE=$2; shift 2 ;;
    --from-nsight-compute) need_arg "$1" $#; FROM_NCU=$2; shift 2 ;;
    --libs) need_arg "$1" $#; LIBS=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    *) usage_error "unknown option $1; see --help" ;;
  esac
done
[ -n "$PREFIX" ] || usage_error "--prefix needs a non-empty value; see --help"
if [ -n "$FROM_ARCHIVE" ] && [ -n "$FROM_NCU" ]; then
  usage_error "--from-archive and --from-nsight-compute cannot be used together; see --help"
fi
[ -n "$FROM_ARCHIVE" ] && MODE=archive
[ -n "$FROM_NCU" ] && MODE=ncu
if [ -n "$LIBS" ] && [ "$MODE" != ncu ]; then
  usage_error "--libs only goes with --from-nsight-compute; see --help"
fi
if [ -n "$ARCHIVE_OUT" ] && [ "$MODE" = ncu ]; then
  usage_error "--archive cannot pack a --from-nsight-compute install (it links into NCU_DIR); see --help"
fi

PREFIX=$(realpath -m -- "$PREFIX")
CACHE=$(realpath -m -- "$CACHE")
[ "$PREFIX" != / ] || die "--prefix / is not allowed; choose a folder of its own, e.g. $ROOT/.tools/nsys"
[ -z "$ARCHIVE_OUT" ] || ARCHIVE_OUT=$(realpath -m -- "$ARCHIVE_OUT")

# ---------------------------------------------------------------- cleanup on any exit
NEW="$PREFIX.tmp.$$"   # the install is built here and moved to PREFIX at the very end
OLD="$PREFIX.old.$$"
WORK=""                 # scratch (apt state, extracted .debs)
cleanup() {
  local rc=$?
  if [ -e "$NEW" ] || [ -L "$NEW" ]; then rm -rf -- "$NEW"; fi
  if [ -e "$OLD" ] && [ ! -e "$PREFIX" ]; then mv -- "$OLD" "$PREFIX"; fi # put a replaced install back
  if [ -e "$OLD" ]; then rm -rf -- "$OLD"; fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then rm -rf -- "$WORK"; fi
  exit "$rc"
}
on_err() {
  local rc=$? line=$1 cmd=$2
  # Only the main shell reports; a failing $(...) reports through its caller.
  if [ "$BASHPID" = "$MAINPID" ]; then
    printf 'Error: step failed at %s line %s (%s, exit %s); see the messages above, fix the cause and run it again\n' \
      "${BASH_SOURCE[0]}" "$line" "$cmd" "$rc" >&2
  fi
  exit "$rc"
}
set_err_trap() { trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR; }
trap cleanup EXIT
set_err_trap
trap 'exit 130' INT TERM
set -E

# Run "$@" in a subshell with errexit on; its failure is not fatal: SOFT_RC gets its status.
# (Not callable from an `if`: bash ignores errexit inside a condition.)
SOFT_RC=0
try_soft() {
  trap - ERR
  set +e
  (
    set -e
    SOFT_DIE=1
    "$@"
  )
  SOFT_RC=$?
  set -e
  set_err_trap
}

mkwork() {
  if [ -z "$WORK" ]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/install_nsys.XXXXXX") || die "cannot create a scratch folder under ${TMPDIR:-/tmp}; set TMPDIR to a writable folder"
  fi
}

# ---------------------------------------------------------------- helpers
# First "x.y.z..." after "version" in `nsys --version` output.
parse_version() { sed -n 's/.*[Vv]ersion \([0-9][0-9.]*[0-9]\).*/\1/p' | head -n 1; }

nsys_version() { # $1: install dir (with target-linux-x64/ and syslib/)
  local out
  out=$(LD_LIBRARY_PATH="$1/syslib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$1/target-linux-x64/nsys" --version 2>/dev/null) || return 0
  printf '%s\n' "$out" | parse_version
}

installed_version() {
  if [ -x "$PREFIX/target-linux-x64/nsys" ] && [ -f "$PREFIX/VERSION" ]; then
    head -n 1 "$PREFIX/VERSION" | tr -d '[:space:]'
  fi
}

# PREFIX may be replaced only if it is missing, empty, or an earlier install.
check_prefix_replaceable() {
  [ -e "$PREFIX" ] || [ -L "$PREFIX" ] || return 0
  [ -d "$PREFIX" ] || die "$PREFIX exists and is not a folder; remove it or choose another --prefix"
  if [ -z "$(ls -A -- "$PREFIX")" ] || [ -e "$PREFIX/VERSION" ] || [ -e "$PREFIX/SOURCE" ] \
    || [ -e "$PREFIX/target-linux-x64" ]; then
    return 0
  fi
  die "$PREFIX exists and is not an Nsight Systems install; remove it or choose another --prefix"
}

write_archive() {
  [ -n "$ARCHIVE_OUT" ] || return 0
  local dir tmp
  dir=$(dirname -- "$ARCHIVE_OUT")
  mkdir -p -- "$dir" || die "cannot create $dir for --archive; choose a writable place"
  tmp="$ARCHIVE_OUT.tmp.$$"
  say "writing $ARCHIVE_OUT (top folder nsys/; xz takes a minute or two)"
  # Members are named nsys/...; the S flag leaves symlink targets (../syslib/...) alone.
  if ! XZ_OPT=${XZ_OPT:--6 -T0} tar -C "$PREFIX" --sort=name --owner=0 --group=0 --numeric-owner --exclude=__pycache__ \
    --transform='s,^\.$,nsys,S' --transform='s,^\./,nsys/,S' -cJf "$tmp" .; then
    rm -f -- "$tmp"
    die "writing the archive $ARCHIVE_OUT failed; check the space and permissions there"
  fi
  mv -f -- "$tmp" "$ARCHIVE_OUT"
  say "wrote $ARCHIVE_OUT ($(du -h -- "$ARCHIVE_OUT" | cut -f1))"
}

finish_message() { # $1: version
  say "nsys $1 at $PREFIX/target-linux-x64/nsys (run with LD_LIBRARY_PATH=$PREFIX/syslib)"
}

already_installed() { # $1: version wanted; exits 0 when it is there
  local have
  have=$(installed_version)
  if [ "$FORCE" = 0 ] && [ -n "$have" ] && [ "$have" = "$1" ]; then
    say "nsys $have already installed at $PREFIX (use --force to reinstall)"
    write_archive
    exit 0
  fi
  if [ "$have" = "$1" ]; then
    say "reinstalling nsys $have at $PREFIX (--force)"
  elif [ -n "$have" ]; then
    say "replacing nsys $have at $PREFIX with $1"
  fi
}

# Move the finished install from $NEW into place; a previous install is replaced.
commit_install() {
  check_prefix_replaceable
  if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then
    mv -- "$PREFIX" "$OLD"
  fi
  mv -- "$NEW" "$PREFIX"
  rm -rf -- "$OLD"
  say "installed into $PREFIX"
}

new_prefix_dir() {
  mkdir -p -- "$(dirname -- "$PREFIX")" || die "cannot create $(dirname -- "$PREFIX"); choose a writable --prefix"
  rm -rf -- "$NEW"
  mkdir -- "$NEW" || die "cannot create $NEW; choose a writable --prefix"
}

# ---------------------------------------------------------------- Debian mirror from apt's own setup
DEBIAN_SUITE_RE='^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable|oldoldstable|experimental)(-[a-z-]+)?$'

# Prints candidate URIs, in apt's reading order, of `deb` entries naming a Debian suite.
apt_source_uris() {
  local f
  local files=()
  [ -f "$APT_ETC/sources.list" ] && files+=("$APT_ETC/sources.list")
  for f in "$APT_ETC"/sources.list.d/*.list "$APT_ETC"/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  # apt reads sources.list first, then sources.list.d/ in name order.
  for f in "${files[@]:0:1}" $(printf '%s\n' "${files[@]:1}" | sort); do
    case $f in
      *.sources)
        awk -v re="$DEBIAN_SUITE_RE" '
          function flush(   n, i, s, ok, t) {
            if (types != "" && enabled != "no") {
              ok = 0; n = split(suites, s, /[ \t]+/)
              for (i = 1; i <= n; i++) if (s[i] ~ re) ok = 1
              t = " " types " "
              if (ok && t ~ /[ \t]deb[ \t]/) { n = split(uris, s, /[ \t]+/); for (i = 1; i <= n; i++) if (s[i] != "") print s[i] }
            }
            types = ""; uris = ""; suites = ""; enabled = ""; key = ""
          }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ { if (key == "uris") uris = uris " " $0; else if (key == "suites") suites = suites " " $0; next }
          {
            i = index($0, ":"); if (i == 0) next
            key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", val)
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "enabled") enabled = tolower(val)
          }
          END { flush() }' "$f"
        ;;
      *)
        # deb [options] URI suite component...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v re="$DEBIAN_SUITE_RE" '$1 == "deb" && $3 ~ re { print $2 }'
        ;;
    esac
  done
}

# First URI of the machine's apt sources whose path ends in $1 (/debian, /debian-security).
apt_uri_ending() {
  local uri path
  while read -r uri; do
    if [[ $uri == mirror+file:* ]]; then # apt's mirror method: the first URI of that list file
      path=${uri#mirror+file:}
      path=${path#//}
      uri=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$path" 2>/dev/null | awk '{print $1; exit}') || uri=""
    fi
    uri=${uri%/}
    case $uri in
      http://*"$1" | https://*"$1" | ftp://*"$1" | file:/*"$1")
        printf '%s\n' "$uri"
        return 0
        ;;
    esac
  done < <(apt_source_uris)
  return 0
}

debian_mirror() {
  if [ -n "${PROFKIT_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "${PROFKIT_DEBIAN_MIRROR%/}"
  else
    apt_uri_ending /debian
  fi
}

# Security updates for the bookworm libraries, when the machine's sources name a mirror for them.
debian_security_mirror() {
  if [ -n "${PROFKIT_DEBIAN_SECURITY_MIRROR:-}" ]; then
    printf '%s\n' "${PROFKIT_DEBIAN_SECURITY_MIRROR%/}"
  else
    apt_uri_ending /debian-security
  fi
}

# ---------------------------------------------------------------- private apt-get download
APT_DIR=""
APT_VERIFIED=""   # "yes", or why not; empty when nothing was downloaded
SEC_MIRROR=""
APT_OPTS=()
APT_SUITES=""

# $@: "suite component" lines for the private sources list.
apt_setup() {
  command -v apt-get >/dev/null || die "apt-get not found: the download mode needs a Debian/Ubuntu machine; use --from-archive with an archive made elsewhere"
  local mirror
  mirror=$(debian_mirror)
  SEC_MIRROR=$(debian_security_mirror)
  [ -n "$mirror" ] || die "no Debian mirror found in $APT_ETC/sources.list or $APT_ETC/sources.list.d/ (a 'deb' entry for a Debian suite whose URI ends in /debian); set PROFKIT_DEBIAN_MIRROR to one, e.g. PROFKIT_DEBIAN_MIRROR=http://<mirror host>/debian"
  mkwork
  APT_DIR="$WORK/apt"
  mkdir -p "$APT_DIR"/{empty,lists/partial,state,cache,archives/partial,download}
  : >"$APT_DIR/status"
  APT_OPTS=(
    -q
    -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
    -o "Dir::Etc::SourceParts=$APT_DIR/empty"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=$APT_DIR/empty"
    -o "Dir::State=$APT_DIR/state"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::State::status=$APT_DIR/status"
    -o "Dir::Cache=$APT_DIR/cache"
    -o "Dir::Cache::archives=$APT_DIR/archives"
    -o "APT::Architecture=amd64"
    -o "APT::Architectures=amd64"
    -o "Acquire::Languages=none"
  )
  # As root apt would fetch as user _apt, who cannot write into this private scratch folder;
  # it then falls back to root with a warning. Say so up front instead.
  if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o "APT::Sandbox::User=root"); fi
  APT_SUITES=$(printf '%s\n' "$@")
  if [[ $APT_SUITES == *-security* ]] && [ -z "$SEC_MIRROR" ]; then
    say "no .../debian-security URI in the apt sources (or PROFKIT_DEBIAN_SECURITY_MIRROR): taking the bookworm libraries without security updates"
  fi
  local trust
  if [ -f "$KEYRING" ]; then
    trust="signed-by=$KEYRING"
  elif [ "${PROFKIT_APT_INSECURE:-}" = 1 ]; then
    say "no $KEYRING; PROFKIT_APT_INSECURE=1, so the package lists are not verified"
    trust="trusted=yes"
  else
    die "$KEYRING not found, so Debian's package lists cannot be verified; install debian-archive-keyring, or set PROFKIT_APT_INSECURE=1 to download without verification"
  fi
  write_sources "$mirror" "$trust"
  if [ "$trust" = trusted=yes ]; then APT_VERIFIED="no (PROFKIT_APT_INSECURE=1)"; else APT_VERIFIED="yes, $KEYRING"; fi
  say "private apt setup in $APT_DIR (mirror $mirror${SEC_MIRROR:+, security $SEC_MIRROR}; the machine's apt configuration is not touched)"
  say "apt-get update (private lists: $(printf '%s' "$APT_SUITES" | tr '\n' ',' | sed 's/,$//'))"
  if ! apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1 || update_failed; then
    sed 's/^/  /' "$APT_DIR/update.log" >&2
    if grep -qE 'NO_PUBKEY|EXPKEYSIG|KEYEXPIRED|BADSIG|GPG error|is not signed|[Ss]ignature' "$APT_DIR/update.log"; then
      if [ "$trust" != trusted=yes ] && [ "${PROFKIT_APT_INSECURE:-}" = 1 ]; then
        say "verification with $KEYRING failed; PROFKIT_APT_INSECURE=1, so retrying without verification"
        write_sources "$mirror" "trusted=yes"
        APT_VERIFIED="no (PROFKIT_APT_INSECURE=1)"
        if ! apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1 || update_failed; then
          sed 's/^/  /' "$APT_DIR/update.log" >&2
          die "apt-get update from $mirror failed even without verification; see the messages above"
        fi
        return 0
      fi
      die "the Debian package lists from $mirror could not be verified with $KEYRING; update debian-archive-keyring, or set PROFKIT_APT_INSECURE=1 to download without verification"
    fi
    die "apt-get update from $mirror failed (see the messages above); check the network, or set PROFKIT_DEBIAN_MIRROR to a reachable Debian mirror"
  fi
  say "package lists: $(grep -h '^Fetched' "$APT_DIR/update.log" || echo 'up to date')"
}

# apt-get update exits 0 when a list cannot be fetched (it only warns): read its log.
update_failed() { grep -qE '^(E:|Err:|W: Failed to fetch|W: GPG error|W: Some index files failed)' "$APT_DIR/update.log"; }

write_sources() { # $1 mirror, $2 trust option; *-security suites come from $SEC_MIRROR
  local suite comp uri
  : >"$APT_DIR/sources.list"
  while read -r suite comp; do
    [ -n "$suite" ] || continue
    uri=$1
    if [[ $suite == *-security ]]; then
      uri=$SEC_MIRROR
      [ -n "$uri" ] || continue
    fi
    printf 'deb [%s] %s %s %s\n' "$2" "$uri" "$suite" "$comp" >>"$APT_DIR/sources.list"
  done <<<"$APT_SUITES"
}

# $1: folder, $2: file glob; prints the newest readable .deb there matching it, if any.
cached_deb() {
  local f ok=()
  # shellcheck disable=SC2086 # $2 is a glob
  for f in "$1"/$2; do
    [ -f "$f" ] || continue
    if dpkg-deb -f "$f" Package >/dev/null 2>&1; then ok+=("$f"); else say "ignoring unreadable cached $f"; fi
  done
  if [ ${#ok[@]} -gt 0 ]; then printf '%s\n' "${ok[@]}" | sort -V | tail -n 1; fi
}

# fetch_debs "SPEC|CACHE_GLOB" ... ; SPEC is what apt-get download is given (name=version or
# name/suite), CACHE_GLOB the file name it gets in the cache. Sets DEBS to the .deb paths.
# $SUITES_FOR_FETCH: the "suite component" lines the private sources need.
DEBS=()
SUITES_FOR_FETCH=()
fetch_debs() {
  local item spec glob f missing=()
  DEBS=()
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found; it is needed to read and unpack the .debs (Debian/Ubuntu's dpkg package)"
  mkdir -p -- "$CACHE" || die "cannot create the cache folder $CACHE; pass --cache DIR with a writable folder"
  for item in "$@"; do
    spec=${item%%|*}
    glob=${item#*|}
    f=$(cached_deb "$CACHE" "$glob")
    if [ -n "$f" ]; then
      say "using cached $(basename -- "$f")"
    else
      missing+=("$spec")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_setup "${SUITES_FOR_FETCH[@]}"
    say "apt-get download ${missing[*]} (into $CACHE)"
    local start=$SECONDS
    if ! (cd "$APT_DIR/download" && apt-get "${APT_OPTS[@]}" download "${missing[@]}" >&2); then
      die "apt-get download ${missing[*]} failed (see the messages above); check that the mirror carries them, or install with --from-archive"
    fi
    local n=0 bytes=0
    for f in "$APT_DIR"/download/*.deb; do
      [ -f "$f" ] || continue
      bytes=$((bytes + $(stat -c %s -- "$f")))
      n=$((n + 1))
      mv -f -- "$f" "$CACHE/"
    done
    say "downloaded $n .deb files, $((bytes / 1048576)) MiB in $((SECONDS - start)) s"
  fi
  for item in "$@"; do
    glob=${item#*|}
    f=$(cached_deb "$CACHE" "$glob")
    [ -n "$f" ] || die "no .deb matching $glob in $CACHE after the download; remove $CACHE and run again"
    DEBS+=("$f")
  done
}

extract_debs() { # $1 dest; the rest: .debs
  local dest=$1 d
  shift
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found; it is needed to unpack the .debs (Debian/Ubuntu's dpkg package)"
  mkdir -p -- "$dest"
  for d in "$@"; do
    say "dpkg -x $(basename -- "$d")"
    dpkg-deb -x "$d" "$dest" || die "unpacking $d failed; delete it from $CACHE and run again"
  done
}

deb_version() { dpkg-deb -f "$1" Version; }

# ---------------------------------------------------------------- mode: download (Debian packages)
install_download() {
  already_installed "$NSYS_VERSION"
  check_prefix_replaceable
  # Only trixie's non-free is listed, so libssh-4 and libpfm4 (main) come from bookworm.
  SUITES_FOR_FETCH=("trixie non-free" "bookworm main" "bookworm-security main")
  fetch_debs \
    "nsight-systems=$DEB_VERSION|nsight-systems_${DEB_VERSION}_amd64.deb" \
    "nsight-systems-target=$DEB_VERSION|nsight-systems-target_${DEB_VERSION}_amd64.deb" \
    "libssh-4|libssh-4_*_amd64.deb" \
    "libpfm4|libpfm4_*_amd64.deb"
  local d pkgs=""
  for d in "${DEBS[@]}"; do pkgs+=" $(dpkg-deb -f "$d" Package)=$(deb_version "$d")"; done
  for d in "${DEBS[@]:0:2}"; do
    [ "$(deb_version "$d")" = "$DEB_VERSION" ] || die "$d is not version $DEB_VERSION; delete it and run again"
  done

  mkwork
  local x="$WORK/x"
  extract_debs "$x" "${DEBS[@]}"
  local tsrc hsrc libsrc="$x/usr/lib/x86_64-linux-gnu"
  tsrc=$(realpath -e -- "$x/usr/lib/nsight-systems/target-linux-x64" 2>/dev/null) \
    || die "the nsight-systems-target package has no usr/lib/nsight-systems/target-linux-x64; its layout changed, so this script needs updating"
  hsrc="$x/usr/lib/nsight-systems/host-linux-x64"
  if [ ! -x "$hsrc/QdstrmImporter" ] || [ ! -f "$hsrc/libexporter.so" ]; then
    die "the nsight-systems package has no host-linux-x64/QdstrmImporter + libexporter.so; its layout changed, so this script needs updating"
  fi

  new_prefix_dir
  # syslib/: libssh and libpfm from bookworm (with their soname links), which nsys' host side needs
  say "syslib/: libssh.so.4, libpfm.so.4 from bookworm"
  mkdir "$NEW/syslib"
  local f
  for f in "$libsrc"/libssh.so.4* "$libsrc"/libpfm.so.4*; do
    [ -e "$f" ] || die "libssh-4/libpfm4 packages lack $(basename -- "$f"); delete the cached .debs and run again"
    cp -a -- "$f" "$NEW/syslib/"
  done

  # target-linux-x64/: all of it but what CUDA 10/11, CollectX and MPI/SHMEM/UCX tracing need
  say "target-linux-x64/: copying (without libcupti 10.x/11.x, CollectX, MPI/SHMEM/UCX injection, CUDA 10-era cuBLAS/cuDNN 7 injection)"
  cp -a -- "$tsrc" "$NEW/target-linux-x64"
  (
    cd "$NEW/target-linux-x64"
    rm -rf -- CollectX libcupti.so.10.* libcupti.so.11.* \
      libToolsInjection*MPI*.so libToolsInjection*MPICH*.so libToolsInjection*SHMEM*.so \
      libToolsInjectionUCP*.so libToolsInjection*UCX*.so \
      libToolsInjectionCuBLAS64_10.so libToolsInjectionCuDNN64_7.so
  )

  # host-linux-x64/: the importer, the exporter, what they load from host-linux-x64, reports/, rules/
  say "host-linux-x64/: QdstrmImporter, libexporter.so, ResolveSymbols, ImportNvtxt and the libraries ldd says they need, reports/, rules/"
  command -v ldd >/dev/null || die "ldd not found; it is needed to find the libraries QdstrmImporter needs (libc-bin)"
  local h="$NEW/host-linux-x64"
  mkdir "$h"
  local exe
  for exe in QdstrmImporter libexporter.so ResolveSymbols ImportNvtxt; do
    if [ -e "$hsrc/$exe" ]; then cp -a -- "$hsrc/$exe" "$h/"; fi
  done
  cp -a -- "$hsrc/reports" "$hsrc/rules" "$h/"
  local libs name
  # ImportNvtxt is kept but not followed: its needs are Qt's GUI stack.
  libs=$(LD_LIBRARY_PATH="$hsrc:$NEW/syslib" ldd "$hsrc/QdstrmImporter" "$hsrc/libexporter.so" "$hsrc/ResolveSymbols" 2>/dev/null \
    | awk -v h="$hsrc/" '$2 == "=>" && index($3, h) == 1 { n = split($3, p, "/"); print p[n] }' | sort -u)
  [ -n "$libs" ] || die "ldd found no libraries of QdstrmImporter in host-linux-x64; run 'ldd $hsrc/QdstrmImporter' to see why"
  while read -r name; do
    link_or_copy_host_lib "$hsrc" "$h" "$name"
  done <<<"$libs"
  say "host-linux-x64/: $(printf '%s\n' "$libs" | wc -l) libraries"

  local missing
  missing=$(LD_LIBRARY_PATH="$NEW/syslib" ldd "$h/QdstrmImporter" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  if [ -n "$missing" ]; then
    say "warning: QdstrmImporter needs libraries this machine lacks: $missing(install them, e.g. with apt-get, before processing reports here)"
  fi

  local v
  v=$(nsys_version "$NEW")
  if [ -z "$v" ]; then
    say "warning: the installed nsys does not run here ('nsys --version' failed); recording version $NSYS_VERSION"
    v=$NSYS_VERSION
  elif [ "$v" != "$NSYS_VERSION" ]; then
    die "the installed nsys says version $v, expected $NSYS_VERSION; delete the cached .debs in $CACHE and run again"
  fi
  printf '%s\n' "$v" >"$NEW/VERSION"
  {
    echo "method: Debian packages (scripts/install_nsys.sh, default mode)"
    echo "packages:$pkgs"
    echo "suites: trixie non-free (nsight-systems*), bookworm main + bookworm-security (libssh-4, libpfm4)"
    echo "package lists verified: ${APT_VERIFIED:-not downloaded now (.debs from $CACHE)}"
    echo "installed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$NEW/SOURCE"
  commit_install
  write_archive
  finish_message "$v"
}

# Copy one library host-linux-x64 needs; a link leading out of the package (libssh.so ->
# /usr/lib/x86_64-linux-gnu/libssh.so.4) becomes a link into ../syslib.
link_or_copy_host_lib() {
  local hsrc=$1 h=$2 name=$3 cur t
  cur="$hsrc/$name"
  while [ -L "$cur" ]; do
    t=$(readlink -- "$cur")
    [[ $t == /* ]] || t="$(dirname -- "$cur")/$t"
    if [ "$(realpath -m -- "$(dirname -- "$t")")" != "$(realpath -- "$hsrc")" ]; then
      if [ -e "$NEW/syslib/$(basename -- "$t")" ]; then
        ln -s "../syslib/$(basename -- "$t")" "$h/$name"
      else
        say "warning: $name links outside host-linux-x64 to $(basename -- "$t"), which syslib/ lacks; skipped"
      fi
      return 0
    fi
    cur=$t
  done
  cp -L -- "$hsrc/$name" "$h/$name"
}

# ---------------------------------------------------------------- mode: --from-archive
install_from_archive() {
  [ -f "$FROM_ARCHIVE" ] || die "archive $FROM_ARCHIVE not found; pass an existing FILE.tar.xz (as written by --archive)"
  FROM_ARCHIVE=$(realpath -- "$FROM_ARCHIVE")
  check_prefix_replaceable
  new_prefix_dir
  say "unpacking $FROM_ARCHIVE"
  if ! tar -xf "$FROM_ARCHIVE" -C "$NEW" --strip-components=1 --no-same-owner nsys; then
    die "unpacking $FROM_ARCHIVE failed (not a tar archive with a top folder nsys/?); pass an archive written by --archive"
  fi
  [ -x "$NEW/target-linux-x64/nsys" ] || die "$FROM_ARCHIVE has no nsys/target-linux-x64/nsys; pass an archive written by --archive"
  local v=""
  if [ -f "$NEW/VERSION" ]; then
    v=$(head -n 1 "$NEW/VERSION" | tr -d '[:space:]')
  fi
  [ -n "$v" ] || v=$(nsys_version "$NEW")
  [ -n "$v" ] || die "cannot tell the version of the nsys in $FROM_ARCHIVE (no nsys/VERSION, and 'nsys --version' does not run here)"
  already_installed "$v"
  printf '%s\n' "$v" >"$NEW/VERSION"
  local orig=""
  [ -f "$NEW/SOURCE" ] && orig=$(cat "$NEW/SOURCE")
  {
    echo "method: archive $FROM_ARCHIVE (scripts/install_nsys.sh --from-archive)"
    echo "installed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [ -n "$orig" ]; then
      echo "archive's SOURCE:"
      printf '%s\n' "$orig" | sed 's/^/  /'
    fi
  } >"$NEW/SOURCE"
  commit_install
  write_archive
  finish_message "$v"
}

# ---------------------------------------------------------------- mode: --from-nsight-compute
fetch_elfutils_libs() { # $1: where to unpack libdw1 and libelf1
  fetch_debs "libdw1|libdw1_*_amd64.deb" "libelf1|libelf1_*_amd64.deb"
  extract_debs "$1" "${DEBS[@]}"
}

install_from_ncu() {
  [ -d "$FROM_NCU" ] || die "Nsight Compute folder $FROM_NCU not found; pass one like /opt/nvidia/nsight-compute/2025.3.1"
  local ncu
  ncu=$(realpath -- "$FROM_NCU")
  local tsrc="$ncu/host/target-linux-x64" hsrc="$ncu/host/linux-desktop-glibc_2_11_3-x64"
  [ -x "$tsrc/nsys" ] || die "$tsrc/nsys not found; pass an Nsight Compute folder that carries Nsight Systems (host/target-linux-x64/nsys)"
  [ -d "$hsrc" ] || die "$hsrc not found; pass an Nsight Compute folder that carries Nsight Systems' host side"
  local v
  v=$("$tsrc/nsys" --version 2>/dev/null | parse_version) || v=""
  if [ -z "$v" ]; then
    v=$(basename -- "$ncu" | grep -oE '[0-9]+(\.[0-9]+)+' | head -n 1) || v=""
    [ -n "$v" ] || die "cannot tell the version: '$tsrc/nsys --version' does not run and $(basename -- "$ncu") names none"
    say "nsys --version did not run; taking version $v from the folder name"
  fi
  say "Nsight Systems $v inside Nsight Compute $ncu"
  already_installed "$v"
  check_prefix_replaceable

  local libdir=""
  if [ -n "$LIBS" ]; then
    if [ ! -f "$LIBS/libdw.so.1" ] || [ ! -f "$LIBS/libelf.so.1" ]; then
      die "--libs $LIBS must hold libdw.so.1 and libelf.so.1 (Debian bookworm's libdw1/libelf1 0.188 work)"
    fi
    libdir=$LIBS
  else
    say "no --libs: fetching libdw1 and libelf1 from Debian bookworm"
    SUITES_FOR_FETCH=("bookworm main" "bookworm-security main")
    mkwork
    try_soft fetch_elfutils_libs "$WORK/libs"
    libdir="$WORK/libs/usr/lib/x86_64-linux-gnu"
    if [ "$SOFT_RC" != 0 ] || [ ! -e "$libdir/libdw.so.1" ] || [ ! -e "$libdir/libelf.so.1" ]; then
      die "could not get libdw.so.1/libelf.so.1 from Debian; pass --libs DIR with them (e.g. Debian bookworm's libdw1/libelf1 0.188)"
    fi
  fi

  new_prefix_dir
  say "target-linux-x64/: copying $tsrc"
  cp -a -- "$tsrc" "$NEW/target-linux-x64"
  say "host-linux-x64 -> $hsrc"
  ln -s -- "$hsrc" "$NEW/host-linux-x64"
  say "syslib/: libdw.so.1, libelf.so.1 from $libdir"
  mkdir "$NEW/syslib"
  cp -L -- "$libdir/libdw.so.1" "$libdir/libelf.so.1" "$NEW/syslib/"
  chmod u+w "$NEW/syslib"/*
  local ran
  ran=$(nsys_version "$NEW")
  [ -z "$ran" ] || v=$ran
  printf '%s\n' "$v" >"$NEW/VERSION"
  {
    echo "method: Nsight Systems inside Nsight Compute (scripts/install_nsys.sh --from-nsight-compute)"
    echo "nsight-compute: $ncu"
    echo "libs: $([ -n "$LIBS" ] && realpath -- "$LIBS" || echo 'Debian bookworm libdw1, libelf1')"
    echo "installed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$NEW/SOURCE"
  commit_install
  finish_message "$v"
}

case $MODE in
  download) install_download ;;
  archive) install_from_archive ;;
  ncu) install_from_ncu ;;
esac
