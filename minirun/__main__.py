"""`python -m minirun` is the same as the `minirun` console script."""

from minirun.cli import program

program()
