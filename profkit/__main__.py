from profkit.fastpath import serve_argv

if __name__ == "__main__" and not serve_argv():  # a cached report is printed before click loads
    from profkit.cli import cli

    cli()
