"""The tunelab commands, one module per concern; tunelab/cli.py maps each command name to its module."""
