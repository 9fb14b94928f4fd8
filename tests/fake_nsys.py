#!/usr/bin/env python3
"""A stand-in for nsys in launcher tests; FAKE_NSYS_MODE picks how it fails.

modes: ok_no_ranges (report and an export without profkit's ranges), analysis_failed (no
report), partial_analysis (analysis failed, report and export written anyway),
warns_but_works (warns of an unknown call, then exports fine but for the ranges),
program_fails, no_kernels (export without a kernels table), runs_program (runs the profiled
program itself and exits with its code). With FAKE_NSYS_CALLS=FILE it appends each call's
arguments to FILE.
"""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

# A real run record (the H100 fixture's), as a CPU run of what the command asked for.
RECORD = json.loads((Path(__file__).parent / "data" / "h100_small_fwd_fp32" / "run.json").read_text())

args = sys.argv[1:]
mode = os.environ.get("FAKE_NSYS_MODE", "ok_no_ranges")
if os.environ.get("FAKE_NSYS_CALLS"):  # a file that records every call, to prove when nsys never ran
    with open(os.environ["FAKE_NSYS_CALLS"], "a") as calls:
        calls.write(json.dumps(args) + "\n")
if args == ["--version"]:
    print("NVIDIA Nsight Systems version 2099.1.1.1-fake")
    sys.exit(0)
if args[0] == "profile":
    output = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
    run_out = Path(args[args.index("--out") + 1])
    if mode == "runs_program":
        program = args[args.index("--force-overwrite=true") + 1:]
        sys.exit(subprocess.run(program, stderr=subprocess.STDOUT).returncode)
    if mode == "program_fails":
        print("Traceback (most recent call last):\nRuntimeError: boom")
        sys.exit(1)
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 10
    RECORD["config"].update(model="tiny", steps=steps, device="cpu", out=str(run_out))
    RECORD["resolved"].update(device="cpu", nvtx="--nvtx" not in args or args[args.index("--nvtx") + 1] != "off")
    (run_out / "run.json").write_text(json.dumps(RECORD))
    if mode in ("analysis_failed", "warns_but_works", "partial_analysis"):
        print("Unknown runtime API function index: 468")
    if mode == "analysis_failed":
        print("**** Analysis failed with:")
        sys.exit(0)
    if mode == "partial_analysis":
        print("**** Analysis failed with:")  # and yet writes a report, as nsys 2023.4.4 did
    Path(output + ".nsys-rep").write_text("fake")
    sys.exit(0)
if args[0] == "export":
    output = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
    db = sqlite3.connect(output)
    db.execute("CREATE TABLE ENUM_NSYS_EVENT_TYPE (id INTEGER, name TEXT)")
    db.execute("INSERT INTO ENUM_NSYS_EVENT_TYPE VALUES (59, 'NvtxPushPopRange')")
    db.execute("CREATE TABLE StringIds (id INTEGER, value TEXT)")
    db.execute("CREATE TABLE NVTX_EVENTS (start INTEGER, end INTEGER, eventType INTEGER, text TEXT, "
               "textId INTEGER, globalTid INTEGER)")
    db.execute("INSERT INTO NVTX_EVENTS VALUES (1, 2, 59, 'something_else', NULL, 1)")
    if mode != "no_kernels":
        db.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER, end INTEGER, deviceId INTEGER, "
                   "streamId INTEGER, correlationId INTEGER, globalPid INTEGER, demangledName INTEGER, "
                   "shortName INTEGER)")
    db.commit()
    sys.exit(0)
sys.exit(3)
