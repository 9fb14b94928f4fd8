"""`python -m profkit` and the `profkit` console script ([project.scripts] points at main): a cached
report is printed by profkit.fastpath before click, pandas or numpy load; anything else runs the CLI."""

from profkit.fastpath import serve_argv


def main() -> None:
    """The entry point of both: the fast path first, then the click command line."""
    if serve_argv():
        return
    from profkit.cli import cli

    cli()


if __name__ == "__main__":
    main()
