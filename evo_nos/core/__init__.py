"""Layer 0, core: the primitive table, rules and their canonical strings, the known
rules, and the small helpers every layer shares.

What its modules offer (import from the module)::

    primitives   PRIMITIVES (the table), RuleSettings (betas, bias correction, noise std)
    rules        Rule (parse, canonical, math, needs), RuleSyntaxError
    known        KNOWN (the named rules), resolve (a Rule, a string or a name -> Rule),
                 name_of
    known_names  REFERENCE_NAMES (the rules every comparison scores)
    algebra      simplify, readable, readable_latex, equivalent (rules as formulas)
    files        write_atomic, FileLock
    tables       write_table, markdown
    threads      torch_threads
"""
