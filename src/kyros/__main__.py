"""`python -m kyros` is the same as the `kyros` command."""

from kyros.cli.main import run

if __name__ == "__main__":
    run()
