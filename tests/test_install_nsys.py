"""scripts/install_nsys.sh without the network: usage, --from-nsight-compute on a fake Nsight Compute
tree, --from-archive on tiny archives, failures that leave nothing behind, and the Debian mirror
taken from apt's sources (file: URIs, so apt-get never leaves the machine).

The download mode itself needs Debian's package registry; CI runs the script for that."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install_nsys.sh"
NCU_VERSION_LINE = "NVIDIA Nsight Systems version 2025.3.1.0-253011234567v0"


def run(*args: str | Path, home: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFKIT_")}
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"), "TMPDIR": str(home)})
    env.update(extra_env or {})
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("Error:")]


def leftovers(prefix: Path) -> list[str]:
    """Anything at or beside PREFIX that a run left: PREFIX itself, PREFIX.tmp.*, PREFIX.old.*."""
    if not prefix.parent.exists():
        return []
    return sorted(p.name for p in prefix.parent.iterdir()
                  if p.name == prefix.name or p.name.startswith(prefix.name + "."))


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def fake_ncu(tmp_path: Path) -> Path:
    ncu = tmp_path / "nsight-compute" / "2025.3.1"
    write_exe(ncu / "host" / "target-linux-x64" / "nsys", f'#!/bin/sh\necho "{NCU_VERSION_LINE}"\n')
    (ncu / "host" / "target-linux-x64" / "libToolsInjection64.so").write_bytes(b"fake")
    write_exe(ncu / "host" / "linux-desktop-glibc_2_11_3-x64" / "QdstrmImporter", "#!/bin/sh\nexit 0\n")
    return ncu


@pytest.fixture
def fake_libs(tmp_path: Path) -> Path:
    libs = tmp_path / "device-libs"
    libs.mkdir()
    (libs / "libdw.so.1").write_bytes(b"dummy libdw")
    (libs / "libelf.so.1").write_bytes(b"dummy libelf")
    return libs


def make_archive(path: Path, version_line: str = "NVIDIA Nsight Systems version 2024.1.2.3-1234v0",
                 top: str = "nsys") -> Path:
    """A tiny stand-in for the shared archive: nsys/{target-linux-x64/nsys,host-linux-x64/,syslib/}."""
    with tarfile.open(path, "w:xz") as tar:
        def add(name: str, data: bytes | None, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(f"{top}/{name}" if name else top)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        for d in ["", "target-linux-x64", "host-linux-x64", "host-linux-x64/reports", "syslib"]:
            add(d, None)
        add("target-linux-x64/nsys", f'#!/bin/sh\necho "{version_line}"\n'.encode(), 0o755)
        add("host-linux-x64/QdstrmImporter", b"#!/bin/sh\nexit 0\n", 0o755)
        add("host-linux-x64/reports/nvtx_sum.py", b"# report\n")
        add("syslib/libssh.so.4", b"dummy")
    return path


# ---------------------------------------------------------------- usage

def test_help_prints_usage(home: Path) -> None:
    for flag in ["--help", "-h"]:
        proc = run(flag, home=home)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("Usage:")
        for word in ["--prefix", "--archive", "--cache", "--from-archive", "--from-nsight-compute", "--libs",
                     "PROFKIT_DEBIAN_MIRROR", "target-linux-x64/nsys"]:
            assert word in proc.stdout
        assert not error_lines(proc)


def test_unknown_option_exits_2_with_one_error_line(home: Path) -> None:
    proc = run("--bogus", home=home)
    assert proc.returncode == 2
    assert error_lines(proc) == ["Error: unknown option --bogus; see --help"]
    assert proc.stderr.strip() == "Error: unknown option --bogus; see --help"


@pytest.mark.parametrize("args", [
    ["--prefix"],                                           # missing value
    ["--libs", "x"],                                        # --libs without --from-nsight-compute
    ["--from-nsight-compute", "a", "--archive", "b.tar.xz"],  # an NCU install links outside itself
    ["--from-nsight-compute", "a", "--from-archive", "b.tar.xz"],
])
def test_bad_combinations_exit_2(home: Path, args: list[str]) -> None:
    proc = run(*args, home=home)
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc)) == 1


# ---------------------------------------------------------------- --from-nsight-compute

def test_from_nsight_compute_layout_and_second_run(tmp_path: Path, home: Path, fake_ncu: Path,
                                                   fake_libs: Path) -> None:
    prefix = tmp_path / "tools" / "nsys"
    proc = run("--from-nsight-compute", fake_ncu, "--libs", fake_libs, "--prefix", prefix, home=home)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "target-linux-x64" / "nsys").is_file() and os.access(prefix / "target-linux-x64" / "nsys", os.X_OK)
    assert (prefix / "target-linux-x64" / "libToolsInjection64.so").read_bytes() == b"fake"
    assert not (prefix / "target-linux-x64").is_symlink()  # a copy: nsys resolves ../host-linux-x64 beside it
    host = prefix / "host-linux-x64"
    assert host.is_symlink()
    assert Path(os.readlink(host)) == (fake_ncu / "host" / "linux-desktop-glibc_2_11_3-x64").resolve()
    assert (host / "QdstrmImporter").is_file()
    assert sorted(p.name for p in (prefix / "syslib").iterdir()) == ["libdw.so.1", "libelf.so.1"]
    assert (prefix / "syslib" / "libdw.so.1").read_bytes() == b"dummy libdw"
    assert (prefix / "VERSION").read_text() == "2025.3.1.0\n"
    assert "nsight-compute" in (prefix / "SOURCE").read_text()
    assert f"nsys 2025.3.1.0 at {prefix}/target-linux-x64/nsys" in proc.stderr
    assert f"LD_LIBRARY_PATH={prefix}/syslib" in proc.stderr
    assert all(line.startswith("install_nsys: ") for line in proc.stderr.splitlines())
    assert leftovers(prefix) == ["nsys"]
    assert not list(home.glob("install_nsys.*"))  # scratch removed

    again = run("--from-nsight-compute", fake_ncu, "--libs", fake_libs, "--prefix", prefix, home=home)
    assert again.returncode == 0, again.stderr
    assert f"nsys 2025.3.1.0 already installed at {prefix}" in again.stderr

    forced = run("--from-nsight-compute", fake_ncu, "--libs", fake_libs, "--prefix", prefix, "--force", home=home)
    assert forced.returncode == 0, forced.stderr
    assert "already installed" not in forced.stderr and (prefix / "VERSION").read_text() == "2025.3.1.0\n"
    assert leftovers(prefix) == ["nsys"]


def test_from_nsight_compute_version_from_folder_name_when_nsys_does_not_run(
        tmp_path: Path, home: Path, fake_ncu: Path, fake_libs: Path) -> None:
    write_exe(fake_ncu / "host" / "target-linux-x64" / "nsys", "#!/bin/sh\nexit 1\n")
    prefix = tmp_path / "p"
    proc = run("--from-nsight-compute", fake_ncu, "--libs", fake_libs, "--prefix", prefix, home=home)
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "VERSION").read_text() == "2025.3.1\n"


@pytest.mark.parametrize("broken", ["no-libelf", "no-host-dir", "no-ncu"])
def test_from_nsight_compute_failures_leave_nothing(tmp_path: Path, home: Path, fake_ncu: Path, fake_libs: Path,
                                                    broken: str) -> None:
    ncu = fake_ncu
    if broken == "no-libelf":
        (fake_libs / "libelf.so.1").unlink()
    elif broken == "no-host-dir":
        shutil.rmtree(fake_ncu / "host" / "linux-desktop-glibc_2_11_3-x64")
    else:
        ncu = tmp_path / "nowhere"
    prefix = tmp_path / "p"
    proc = run("--from-nsight-compute", ncu, "--libs", fake_libs, "--prefix", prefix, home=home)
    assert proc.returncode == 1
    assert len(error_lines(proc)) == 1, proc.stderr
    assert leftovers(prefix) == []


# ---------------------------------------------------------------- --from-archive

def test_from_archive_installs_and_is_idempotent(tmp_path: Path, home: Path) -> None:
    archive = make_archive(tmp_path / "nsys-tiny.tar.xz")
    prefix = tmp_path / "p"
    proc = run("--from-archive", archive, "--prefix", prefix, home=home)
    assert proc.returncode == 0, proc.stderr
    assert os.access(prefix / "target-linux-x64" / "nsys", os.X_OK)
    assert (prefix / "host-linux-x64" / "reports" / "nvtx_sum.py").is_file()
    assert (prefix / "syslib" / "libssh.so.4").read_bytes() == b"dummy"
    assert (prefix / "VERSION").read_text() == "2024.1.2.3\n"  # from `nsys --version`: the archive has no VERSION
    assert str(archive) in (prefix / "SOURCE").read_text()
    assert f"nsys 2024.1.2.3 at {prefix}/target-linux-x64/nsys" in proc.stderr
    assert leftovers(prefix) == ["p"]

    again = run("--from-archive", archive, "--prefix", prefix, home=home)
    assert again.returncode == 0 and "already installed" in again.stderr
    assert leftovers(prefix) == ["p"]


def test_archive_round_trip(tmp_path: Path, home: Path) -> None:
    prefix = tmp_path / "first"
    assert run("--from-archive", make_archive(tmp_path / "in.tar.xz"), "--prefix", prefix, home=home).returncode == 0
    out = tmp_path / "out" / "nsys-carry.tar.xz"
    proc = run("--from-archive", tmp_path / "in.tar.xz", "--prefix", prefix, "--archive", out, home=home)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert all(n == "nsys" or n.startswith("nsys/") for n in names)
    assert {"nsys/VERSION", "nsys/SOURCE", "nsys/target-linux-x64/nsys", "nsys/syslib/libssh.so.4"} <= set(names)

    second = tmp_path / "second"
    proc = run("--from-archive", out, "--prefix", second, home=home)
    assert proc.returncode == 0, proc.stderr
    assert (second / "VERSION").read_text() == "2024.1.2.3\n"
    assert "archive's SOURCE:" in (second / "SOURCE").read_text()


@pytest.mark.parametrize("kind", ["missing", "garbage", "wrong-top-folder", "no-nsys"])
def test_from_archive_bad_archive_fails_and_leaves_no_prefix(tmp_path: Path, home: Path, kind: str) -> None:
    archive = tmp_path / "bad.tar.xz"
    if kind == "garbage":
        archive.write_bytes(b"not an archive at all" * 100)
    elif kind == "wrong-top-folder":
        make_archive(archive, top="something-else")
    elif kind == "no-nsys":
        with tarfile.open(archive, "w:xz") as tar:
            info = tarfile.TarInfo("nsys")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    prefix = tmp_path / "p"
    proc = run("--from-archive", archive, "--prefix", prefix, home=home)
    assert proc.returncode != 0
    assert len(error_lines(proc)) == 1, proc.stderr
    assert leftovers(prefix) == []
    assert not list(home.glob("install_nsys.*"))


def test_failed_reinstall_keeps_the_previous_install(tmp_path: Path, home: Path) -> None:
    prefix = tmp_path / "p"
    assert run("--from-archive", make_archive(tmp_path / "ok.tar.xz"), "--prefix", prefix, home=home).returncode == 0
    before = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*"))
    (tmp_path / "bad.tar.xz").write_bytes(b"garbage")
    proc = run("--from-archive", tmp_path / "bad.tar.xz", "--prefix", prefix, "--force", home=home)
    assert proc.returncode == 1 and len(error_lines(proc)) == 1
    assert sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*")) == before
    assert leftovers(prefix) == ["p"]


def test_refuses_to_replace_a_folder_that_is_not_an_install(tmp_path: Path, home: Path) -> None:
    prefix = tmp_path / "p"
    prefix.mkdir()
    (prefix / "precious.txt").write_text("keep me")
    proc = run("--from-archive", make_archive(tmp_path / "ok.tar.xz"), "--prefix", prefix, home=home)
    assert proc.returncode == 1
    assert error_lines(proc) and "not an Nsight Systems install" in error_lines(proc)[0]
    assert sorted(p.name for p in prefix.iterdir()) == ["precious.txt"]
    assert leftovers(prefix) == ["p"]


# ---------------------------------------------------------------- Debian mirror from apt's sources

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
                               reason="needs apt-get and dpkg-deb (Debian/Ubuntu)")


def apt_etc(tmp_path: Path) -> Path:
    """One-line and deb822 sources: comments, deb-src, non-Debian, disabled and -security entries to skip."""
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# deb http://127.0.0.1:7/debian bookworm main\n"
        "deb [signed-by=/k.gpg] file:/nonexistent/sec/debian-security bookworm-security main\n"
        "deb-src http://127.0.0.1:8/debian bookworm main\n"
        "deb http://127.0.0.1:6/ubuntu noble main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://127.0.0.1:5/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb deb-src\n# comment\nURIs: file:///nonexistent/main/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    (etc / "sources.list.d" / "other.list.disabled").write_text("deb http://127.0.0.1:4/debian bookworm main\n")
    return etc


@needs_apt
def test_download_mode_takes_the_mirror_from_apt_sources(tmp_path: Path, home: Path) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"")
    prefix = tmp_path / "p"
    proc = run("--prefix", prefix, "--cache", tmp_path / "cache", home=home,
               extra_env={"PROFKIT_APT_ETC": str(apt_etc(tmp_path)), "PROFKIT_DEBIAN_KEYRING": str(keyring)})
    assert proc.returncode == 1
    assert "mirror file:///nonexistent/main/debian, security file:/nonexistent/sec/debian-security" in proc.stderr
    assert error_lines(proc) == [
        "Error: apt-get update from file:///nonexistent/main/debian failed (see the messages above); "
        "check the network, or set PROFKIT_DEBIAN_MIRROR to a reachable Debian mirror"]
    assert leftovers(prefix) == []
    assert not list(home.glob("install_nsys.*"))


@needs_apt
def test_download_mode_mirror_override(tmp_path: Path, home: Path) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"")
    proc = run("--prefix", tmp_path / "p", "--cache", tmp_path / "cache", home=home,
               extra_env={"PROFKIT_APT_ETC": str(apt_etc(tmp_path)), "PROFKIT_DEBIAN_KEYRING": str(keyring),
                          "PROFKIT_DEBIAN_MIRROR": "file:/nonexistent/override/debian/"})
    assert proc.returncode == 1
    assert "apt-get update from file:/nonexistent/override/debian failed" in error_lines(proc)[0]


@needs_apt
def test_download_mode_without_a_mirror_says_to_set_one(tmp_path: Path, home: Path) -> None:
    empty = tmp_path / "etc-apt"
    empty.mkdir()
    prefix = tmp_path / "p"
    proc = run("--prefix", prefix, "--cache", tmp_path / "cache", home=home,
               extra_env={"PROFKIT_APT_ETC": str(empty)})
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert len(errors) == 1 and "PROFKIT_DEBIAN_MIRROR" in errors[0], proc.stderr
    assert leftovers(prefix) == []
