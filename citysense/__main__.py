"""`python -m citysense`: the `citysense` command line."""

from citysense.cli import main

main()
