"""`python -m profkit` and the `profkit` console script ([project.scripts] points at main): a cached
report is printed by profkit.fastpath before click, pandas or numpy load, and a plain `report kernels|nvtx`
is computed there without click; anything else runs the CLI."""

from profkit.fastpath import compute_argv, serve_argv


def main() -> None:
    """The entry point of both: the fast path first (a cached report, then a plain report kernels
    or nvtx computed without click), then the click command line."""
    if serve_argv() or compute_argv():
        return
    from profkit.cli import cli

    cli()


if __name__ == "__main__":
    main()
