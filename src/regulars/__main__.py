"""`python -m regulars` is the `regulars` command."""

from regulars.cli import main

main()
