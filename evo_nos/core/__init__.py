"""The bottom layer: the primitive table, rules and their canonical strings, the known
rules, and the small helpers every layer shares (atomic files, tables, torch threads)."""
