"""Layer 4, fitness: rules in, Evaluations out.  ``evaluation`` (plain data), ``probe`` and
``screen`` (cheap checks and the functional fingerprint), ``data`` and ``models``,
``tasks`` (the protocol's numbers; presets in ``presets/*.toml``), ``train`` (the one
training loop and lr-sweep protocol), ``backend`` (cache, screen, joblib workers),
``standin`` (a cheap stand-in fitness) and ``factory`` (a backend from a config)."""
