"""Several ranks through torchrun: the command lines, the job's life, and what to say when it fails.

profkit launches no rank itself: torchrun (`python -m torch.distributed.run`) does, with its own
rendezvous, and every rank runs `python -m profkit run` as one device's worker (workload.py
reads torchrun's RANK/LOCAL_RANK/WORLD_SIZE). The command builders are pure and tested on CPU:

    run           torchrun OPTS -m profkit run ARGS --out DIR
    per rank      torchrun OPTS --no-python nsys profile NSYS_OPTS --output=DIR/rank%q{RANK} python -m profkit run ...
    single file   nsys profile NSYS_OPTS --output=DIR/profile python -m torch.distributed.run OPTS -m profkit run ...

The job runs in a session of its own. A rank that fails ends it (torchrun stops the others), and
the error names that rank (torchrun's "Root Cause") with its `Error:` line or last lines; a job
still running after `--timeout` gets SIGUSR1 first, on which every rank prints its Python stacks
into rank{R}.log (faulthandler), so the error says which ranks waited in a collective and where
the others were. No torch here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from profkit import layout
from profkit.collect.launch import ANALYSIS_FAILED, CaptureError, attempt_folder, check_destination, tail
from profkit.config import RunConfig
from profkit.errors import ProfkitError
from profkit.nsys import NSYS_ENV, Nsys, NsysError, export, profile_flags, profile_options

LAUNCHED_ENV = "PROFKIT_LAUNCHED"
"""Set by profkit's launcher for its ranks: each writes what it prints into rank{R}.log."""
STACK_SIGNAL = signal.SIGUSR1
STACK_WAIT_S = 3.0
"""After the timeout: how long the ranks get to print their stacks before they are ended."""
TERM_WAIT_S = 10.0


class DistributedError(ProfkitError):
    """A multi-rank job that cannot start, or that failed; the message names the rank."""


@dataclass(frozen=True, slots=True)
class RankEnv:
    """This process's place in a torchrun job."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int


def rank_env(env: Mapping[str, str] | None = None) -> RankEnv | None:
    """torchrun's RANK, LOCAL_RANK, WORLD_SIZE (and LOCAL_WORLD_SIZE); None outside a torchrun job.

    >>> rank_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    RankEnv(rank=3, local_rank=1, world_size=4, local_world_size=2)
    >>> rank_env({}) is None
    True
    """
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        return RankEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"])), world,
                       int(env.get("LOCAL_WORLD_SIZE", world)))
    except ValueError:
        raise DistributedError(f"torchrun's RANK/LOCAL_RANK/WORLD_SIZE are not integers ({env.get('RANK')!r}, "
                               f"{env.get('LOCAL_RANK')!r}, {env.get('WORLD_SIZE')!r})") from None


def _first_int(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def with_slurm(cfg: RunConfig, env: Mapping[str, str] | None = None) -> RunConfig:
    """Under `srun` (a Slurm job step), torchrun's node options from Slurm where not given:
    --nnodes from SLURM_STEP_NUM_NODES (else SLURM_NNODES), --node-rank from SLURM_NODEID,
    --rdzv-id from SLURM_JOB_ID, and --rdzv-backend c10d across nodes. Outside srun: `cfg`.

    Raises:
        DistributedError: srun started more than one task on this node (torchrun starts the ranks:
            one profkit per node, srun --ntasks-per-node=1).

    >>> env = {"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_ID": "77",
    ...        "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}
    >>> c = with_slurm(RunConfig(strategy="ddp", nproc_per_node=8), env)
    >>> c.nnodes, c.node_rank, c.rdzv_id, c.rdzv_backend
    ('2', 1, '77', 'c10d')
    """
    env = os.environ if env is None else env
    if "SLURM_STEP_ID" not in env or not cfg.distributed:
        return cfg
    tasks = _first_int(env.get("SLURM_STEP_TASKS_PER_NODE", env.get("SLURM_NTASKS_PER_NODE", "1")))
    if tasks is not None and tasks > 1:
        raise DistributedError(f"srun started {tasks} tasks on this node; start one profkit per node "
                               "(srun --ntasks-per-node=1): torchrun starts the --nproc-per-node ranks itself")
    nodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES")
    changes: dict[str, object] = {}
    if cfg.nnodes == "1" and nodes and nodes.isdigit():
        changes["nnodes"] = nodes
    if cfg.node_rank is None and env.get("SLURM_NODEID", "").isdigit():
        changes["node_rank"] = int(env["SLURM_NODEID"])
    if cfg.rdzv_id is None and env.get("SLURM_JOB_ID"):
        changes["rdzv_id"] = env["SLURM_JOB_ID"]
    if cfg.rdzv_backend is None and changes.get("nnodes", cfg.nnodes) != "1":
        changes["rdzv_backend"] = "c10d"
    return replace(cfg, **changes) if changes else cfg  # type: ignore[arg-type]


def multi_node(cfg: RunConfig) -> bool:
    return cfg.nnodes != "1"


def check_launch(cfg: RunConfig, *, device: str, gpus: int) -> None:
    """What torchrun would start and fail on, refused before anything starts.

    Args:
        gpus: CUDA devices this process sees (torch.cuda.device_count()).

    Raises:
        DistributedError: more ranks per node than GPUs, several nodes without a rendezvous endpoint.
    """
    if device == "cuda" and cfg.nproc_per_node > gpus:
        raise DistributedError(f"--nproc-per-node {cfg.nproc_per_node} needs {cfg.nproc_per_node} GPUs, one per "
                               f"rank; this node has {gpus}")
    if multi_node(cfg) and not cfg.rdzv_endpoint:
        raise DistributedError(f"--nnodes {cfg.nnodes} needs --rdzv-endpoint HOST:PORT (the first node's address, "
                               "the same on every node) and --rdzv-backend c10d")


def torchrun_options(cfg: RunConfig) -> list[str]:
    """torchrun's options for `cfg`: one node without a rendezvous runs --standalone (a free port,
    so two jobs on one machine never meet on torchrun's default 29500).

    >>> torchrun_options(RunConfig(strategy="ddp", nproc_per_node=2))
    ['--nproc-per-node', '2', '--standalone']
    >>> torchrun_options(RunConfig(strategy="ddp", nproc_per_node=4, nnodes="2", node_rank=1, rdzv_backend="c10d",
    ...                            rdzv_endpoint="n0:29400", rdzv_id="7"))[2:]
    ['--nnodes', '2', '--node-rank', '1', '--rdzv-backend', 'c10d', '--rdzv-endpoint', 'n0:29400', '--rdzv-id', '7']
    """
    args = ["--nproc-per-node", str(cfg.nproc_per_node)]
    rdzv = [(f"--{k.replace('_', '-')}", v) for k, v in (("rdzv_backend", cfg.rdzv_backend),
                                                         ("rdzv_endpoint", cfg.rdzv_endpoint),
                                                         ("rdzv_id", cfg.rdzv_id)) if v is not None]
    if not multi_node(cfg) and not rdzv:
        return [*args, "--standalone"]
    args += ["--nnodes", cfg.nnodes]
    if cfg.node_rank is not None:
        args += ["--node-rank", str(cfg.node_rank)]
    for flag, value in rdzv:
        args += [flag, value]
    return args


def _worker(cfg: RunConfig, *, device: str, out: Path, python: str) -> list[str]:
    run_args = cfg.to_args() + ([] if cfg.device else ["--device", device])
    return [python, "-m", "profkit", "run", *run_args, "--out", str(out), "--force"]


def build_run_command(cfg: RunConfig, *, device: str, out: Path, python: str = sys.executable) -> list[str]:
    """`torchrun ... -m profkit run ...`: every rank a worker writing into `out`."""
    worker = _worker(cfg, device=device, out=out, python=python)
    return [python, "-m", "torch.distributed.run", *torchrun_options(cfg), *worker[1:]]


def build_rank_profile_command(nsys: Path, cfg: RunConfig, *, device: str, user_args: list[str], out: Path,
                               python: str = sys.executable, flags: Collection[str] = ()) -> list[str]:
    """One nsys per rank: torchrun starts `nsys profile ... --output=out/rank%q{RANK} python -m profkit run`.

    Raises:
        NsysError: the user set --output, which profkit owns.
    """
    nsys_args = profile_options(user_args, device=device, flags=flags)
    return [python, "-m", "torch.distributed.run", *torchrun_options(cfg), "--no-python", str(nsys), "profile",
            *nsys_args, f"--output={out / layout.RANK_NSYS_STEM}", "--force-overwrite=true",
            *_worker(cfg, device=device, out=out, python=python)]


def build_single_file_command(nsys: Path, cfg: RunConfig, *, device: str, user_args: list[str], out: Path,
                              python: str = sys.executable, flags: Collection[str] = ()) -> list[str]:
    """One nsys around torchrun, tracing its child processes: every rank a process of one export.

    Raises:
        NsysError: the user set --output, which profkit owns.
    """
    nsys_args = profile_options(user_args, device=device, flags=flags)
    return [str(nsys), "profile", *nsys_args, f"--output={out / layout.NSYS_STEM}", "--force-overwrite=true",
            *build_run_command(cfg, device=device, out=out, python=python)]


def redirect_output(folder: Path, rank: int) -> None:
    """A rank started by profkit's launcher prints into folder/rank{R}.log (stdout and stderr, C
    libraries' included), and prints its Python stacks there on STACK_SIGNAL (faulthandler).

    Raises:
        DistributedError: the log cannot be opened.
    """
    import faulthandler

    try:
        fd = os.open(folder / layout.RANK_LOG.format(rank=rank), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     layout.FILE_MODE)
    except OSError as e:
        raise DistributedError(f"cannot write {folder / layout.RANK_LOG.format(rank=rank)}: {e.strerror}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)


# --- the job ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobResult:
    code: int
    timed_out: bool


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (those this launcher started through torchrun or nsys)."""
    children, found, todo = _children(), [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _worker_rank(pid: int) -> int | None:
    """The rank of a `python -m profkit run` worker process (its RANK), None for anything else."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    # python [-u] -m profkit run (torchrun adds -u); not the nsys or torchrun around it
    head = argv[1:5]
    if b"python" not in Path(argv[0].decode(errors="replace")).name.encode() or not any(
            head[i:i + 3] == [b"-m", b"profkit", b"run"] for i in range(2)):
        return None
    rank = next((e[5:] for e in environ if e.startswith(b"RANK=")), None)
    return int(rank) if rank is not None and rank.isdigit() else None


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def run_job(cmd: list[str], *, log: Path, env: dict[str, str], timeout: int) -> JobResult:
    """Run the job, its output appended to `log`; after `timeout` s, ask its ranks for their stacks
    (STACK_SIGNAL), then end it (SIGTERM, then SIGKILL to what is left), each process by its id."""
    with log.open("a") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return JobResult(proc.wait(timeout=timeout), False)
        except subprocess.TimeoutExpired:
            below = descendants(proc.pid)
            _signal([p for p in below if _worker_rank(p) is not None], STACK_SIGNAL)
            time.sleep(STACK_WAIT_S)
            _signal([proc.pid, *below], signal.SIGTERM)
            try:
                proc.wait(timeout=TERM_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
            _signal([proc.pid, *below], signal.SIGKILL)
            proc.wait()
            return JobResult(proc.returncode, True)


# --- what to say when it failed ------------------------------------------------------------------------------

_ROOT = re.compile(r"Root Cause.*?rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)", re.S)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
LAST_LINES = 12


def root_cause(log_text: str) -> tuple[int, int] | None:
    """(rank, exit code) of torchrun's "Root Cause (first observed failure)", None when absent."""
    m = _ROOT.search(log_text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def last_stack(log_text: str) -> list[tuple[str, int, str]]:
    """The frames (file, line, function; innermost first) of the main thread in the last
    faulthandler dump of a rank's log: a dump lists the newest thread first, so the main thread
    is the last block.

    >>> last_stack('Thread 0x1 (most recent call first):\\n  File "a.py", line 3 in f\\n\\n'
    ...            'Current thread 0x2 (most recent call first):\\n  File "b.py", line 9 in sleep\\n'
    ...            '  File "c.py", line 1 in <module>\\n')
    [('b.py', 9, 'sleep'), ('c.py', 1, '<module>')]
    """
    starts = [m.start() for m in re.finditer(r"^(?:Current thread|Thread) 0x[0-9a-f]+", log_text, re.M)]
    if not starts:
        return []
    frames = []
    for line in log_text[starts[-1]:].splitlines()[1:]:
        m = _FRAME.match(line)
        if m is None:
            break
        frames.append((m.group("file"), int(m.group("line")), m.group("func")))
    return frames


def where(frames: list[tuple[str, int, str]]) -> tuple[bool, str]:
    """(waiting at a collective, where) for a rank's stack, by its innermost frame: one of
    torch.distributed or DDP/FSDP waits at a collective, one of autograd's backward waits there
    too (DDP's gradient all-reduce is waited for inside the engine); anything else is elsewhere.

    >>> where([("/x/torch/autograd/graph.py", 9, "_engine_run_backward"), ("/p/profkit/workload.py", 1, "step")])
    (True, 'in backward (gradient synchronisation): _engine_run_backward (graph.py:9), from workload.py:1 step')
    >>> where([("/m/user_models.py", 54, "forward"), ("/x/torch/nn/parallel/distributed.py", 1, "forward")])
    (False, 'at forward (user_models.py:54)')
    """
    if not frames:
        return False, "no stack (it had exited, or had not started Python)"
    file, line, func = frames[0]
    here = f"{func} ({Path(file).name}:{line})"
    ours = next((f"{Path(f).name}:{n} {fn}" for f, n, fn in frames[1:] if "/profkit/" in f), None)
    ctx = f", from {ours}" if ours else ""
    if "/torch/distributed/" in file or "/torch/nn/parallel/" in file:
        return True, f"in a collective: {here}{ctx}"
    if "/torch/autograd/" in file:
        return True, f"in backward (gradient synchronisation): {here}{ctx}"
    return False, f"at {here}{ctx if '/profkit/' not in file else ''}"


def _rank_logs(folder: Path) -> dict[int, str]:
    return {r: p.read_text(errors="replace") for r, p in layout.rank_files(folder, layout.RANK_LOG).items()}


def hang_message(folder: Path, *, timeout: int, world_size: int) -> str:
    """The error for a job ended after `timeout`: which ranks waited at a collective, where the others were."""
    logs = _rank_logs(folder)
    waiting: list[str] = []
    others: list[str] = []
    for rank in range(world_size):
        in_collective, at = where(last_stack(logs.get(rank, "")))
        (waiting if in_collective else others).append(f"rank {rank} {at}")
    parts = [f"the job did not finish within --timeout {timeout} s and was ended"]
    if waiting:
        parts.append("waiting at a collective: " + "; ".join(waiting))
    if others:
        parts.append("not in a collective (the ones waited for, or stuck elsewhere): " + "; ".join(others))
    return ". ".join(parts) + f". Each rank's stacks: {folder}/rank{{R}}.log; a longer job needs a larger --timeout"


def failure_message(folder: Path, launch_log: Path, code: int) -> str:
    """The error for a job that ended non-zero: the failed rank (torchrun's root cause, else the
    first rank whose log has an Error: line or a traceback), its error and last lines."""
    text = launch_log.read_text(errors="replace") if launch_log.exists() else ""
    logs = _rank_logs(folder)
    cause = root_cause(text)
    rank, rank_code = cause if cause else (None, code)
    if rank is None:
        rank = next((r for r, t in logs.items() if "Error: " in t or "Traceback" in t), None)
    if rank is None:
        return f"the job failed (exit code {code}) before any rank reported:\n{tail(launch_log)}"
    lines = logs.get(rank, "").strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    if errors:
        return f"rank {rank} failed: {errors[-1].removeprefix('Error: ')} (its output: {folder}/rank{rank}.log)"
    shown = lines[-LAST_LINES:] or tail(launch_log).splitlines()
    return f"rank {rank} failed (exit code {rank_code}); its last lines:\n" + "\n".join(shown)


# --- the launchers --------------------------------------------------------------------------------------------


def _env(nsys: Nsys | None) -> dict[str, str]:
    extra = {LAUNCHED_ENV: "1"}
    return nsys.run_env({**NSYS_ENV, **extra}) if nsys is not None else {**os.environ, **extra}


def run_ranks(cfg: RunConfig, *, device: str, status: Callable[[str], None] = lambda s: None) -> Path:
    """`profkit run --nproc-per-node N`: torchrun's job into cfg.out (run.json: rank 0's record,
    rank{R}.run.json and rank{R}.log per rank, torchrun.log); returns the folder.

    Raises:
        DistributedError: the folder holds a run already (no --force), or a rank failed or hung.
    """
    out = cfg.out or Path("runs") / f"{cfg.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / layout.RUN_FILE).exists() and not cfg.force:
        raise DistributedError(f"{out / layout.RUN_FILE} exists; choose another --out or pass --force to overwrite it")
    if out.exists() and not out.is_dir():
        raise DistributedError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for old in [*layout.rank_files(out, layout.RANK_RUN).values(), *layout.rank_files(out, layout.RANK_LOG).values()]:
        old.unlink()  # --force: a rank of the last run must not pass for one of this run
    log = out / layout.LAUNCH_LOG
    log.write_text("")
    status(f"running {cfg.world_label} through torchrun")
    result = run_job(build_run_command(cfg, device=device, out=out), log=log, env=_env(None), timeout=cfg.timeout)
    if result.timed_out:
        raise DistributedError(hang_message(out, timeout=cfg.timeout, world_size=_world(cfg)))
    if result.code != 0:
        raise DistributedError(failure_message(out, log, result.code))
    return out


def _world(cfg: RunConfig) -> int:
    nodes = int(cfg.nnodes.split(":")[-1])
    return cfg.nproc_per_node * nodes


def _partial_name(cfg: RunConfig, name: str) -> str:
    """Each node works apart (a shared file system holds every node's folder)."""
    return f"{name}.node{cfg.node_rank or 0}" if multi_node(cfg) else name


def profile_ranks(nsys: Nsys, cfg: RunConfig, *, device: str, name: str, out_dir: Path, user_args: list[str],
                  single_file: bool, check: Callable[[Path], None], force: bool = False,
                  status: Callable[[str], None] = lambda s: None, flags: Collection[str] | None = None) -> Path:
    """`profkit profile --nproc-per-node N`: capture every rank (one nsys each, or --single-file one
    around torchrun), export to SQLite, check; returns the capture folder.

    Works in out_dir/.NAME.partial/ (.NAME.nodeK.partial/ per node on several nodes) and moves the
    files into out_dir/NAME/ only when everything succeeded; a failed attempt is kept as
    NAME.failed/ (NAME.nodeK.failed/) with every rank's capture and log. `flags`: as launch.profile's.

    Raises:
        CaptureError: a rank failed or hung, nsys failed, or the check refused the export.
    """
    final = out_dir / name
    part_name = _partial_name(cfg, name)
    partial = out_dir / layout.PARTIAL.format(name=part_name)
    failed = out_dir / layout.FAILED.format(name=part_name)
    # a later node writes its ranks into the capture folder the first node made
    check_destination(final, out_dir, force or (multi_node(cfg) and (cfg.node_rank or 0) > 0))
    build = build_single_file_command if single_file else build_rank_profile_command
    try:
        cmd = build(nsys.path, cfg, device=device, user_args=user_args, out=partial,
                    flags=profile_flags(nsys) if flags is None else flags)
    except NsysError as e:
        raise CaptureError(str(e)) from None
    log, failure = attempt_folder(partial, failed)

    status(f"capturing {cfg.world_label} with nsys {nsys.version_str}" + (" (one file)" if single_file else ""))
    result = run_job(cmd, log=log, env=_env(nsys), timeout=cfg.timeout)
    if result.timed_out:
        raise failure(hang_message(partial, timeout=cfg.timeout, world_size=_world(cfg)))
    if result.code != 0:
        raise failure(failure_message(partial, log, result.code))
    ranks = sorted(layout.rank_files(partial, layout.RANK_RUN))
    expected = list(range(cfg.nproc_per_node)) if not multi_node(cfg) else ranks
    if not ranks or ranks != sorted(set(ranks) | set(expected)):
        raise failure(f"ranks {sorted(set(expected) - set(ranks))} wrote no run record:\n{tail(log)}")
    if ANALYSIS_FAILED in log.read_text(errors="replace"):
        raise failure(f"nsys {nsys.version_str}'s analysis failed for a rank, so its export would hold only part "
                      "of the run; use a newer nsys (profkit doctor says how)")
    reports = ([partial / layout.NSYS_REPORT] if single_file
               else [partial / layout.RANK_REPORT.format(rank=r) for r in ranks])
    missing = [p.name for p in reports if not p.exists()]
    if missing:
        raise failure(f"nsys wrote no {', '.join(missing)}:\n{tail(log)}")
    status(f"exporting {len(reports)} report{'s' if len(reports) > 1 else ''} to SQLite")
    try:
        with ThreadPoolExecutor(max_workers=min(len(reports), os.cpu_count() or 1)) as pool:
            list(pool.map(lambda p: export(nsys, p, p.with_suffix(".sqlite"), log=None), reports))
    except NsysError as e:
        raise failure(str(e)) from None
    try:
        check(partial)
    except ProfkitError as e:
        raise failure(str(e)) from None
    return _finish(partial, final, cfg, force=force)


def _finish(partial: Path, final: Path, cfg: RunConfig, *, force: bool) -> Path:
    if not multi_node(cfg):
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        _point_records_at(final)
        return final
    final.mkdir(parents=True, exist_ok=True)  # several nodes: each moves its own ranks' files in
    for f in sorted(partial.iterdir()):
        target = final / (f"nsys.node{cfg.node_rank or 0}.log" if f.name == layout.LOG else f.name)
        if target.exists() and not force:
            raise CaptureError(f"{target} exists (another node's?); pass --force to replace it")
        os.replace(f, target)
    partial.rmdir()
    _point_records_at(final)
    return final


def _point_records_at(folder: Path) -> None:
    """The records were written into the partial folder: make their config name the final one."""
    paths = list(layout.rank_files(folder, layout.RANK_RUN).values())
    paths += [folder / layout.RUN_FILE] if (folder / layout.RUN_FILE).exists() else []
    for path in paths:
        record = layout.RunRecord.read_file(path)
        record = replace(record, config=replace(record.config, out=folder, force=False))
        layout.write_text(path, record.to_json())
