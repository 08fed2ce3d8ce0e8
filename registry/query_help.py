"""The user-facing description of the `--where` language; plain text, cheap to import for --help."""

# Plain paragraphs, so click can rewrap them in --help.
FIELDS_HELP = """\
--where takes comparisons such as method.kind = "lora" or arc_challenge > 0.3, joined with and, or, not and
parentheses (and binds tighter than or); keywords are case-insensitive.

Fields: id (or run), name, status, created, loss (final training loss), val_loss (final validation loss), tags,
search and trial (a search's trial: its search's id and its number); any spec key such as method.kind,
train.learning_rate or model.base; a task's headline score (arc_challenge, hellaswag, mmlu, truthfulqa_mc2, or a
custom task's name) and average, the mean of the leaderboard tasks present.

Operators: = != < <= > >= and contains (tags contains "demo"; on text, a case-insensitive substring). Values:
"text" or 'text', numbers such as 0.3 or 2e-4, true and false; created compares with a date such as "2024-05-01".

A run without a value for a field matches no comparison on it, and --sort FIELD (the same fields, except tags)
lists it last.
"""
