"""`python -m jepa_jax <command> ...` is the same as `jepa-jax <command> ...`."""

from jepa_jax.cli import main

main()
