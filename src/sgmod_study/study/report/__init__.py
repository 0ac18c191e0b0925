"""A study's report from its records alone (no training, no torch): ``document.write_report``.

One module per section, each with a ``compute`` (plain data from the record) and a ``render``
(Markdown lines and figures): ``controls``, ``travel``, ``sweeps``, ``importance``, ``confirm``;
``paired`` formats paired differences and their verdicts, ``figures`` draws (matplotlib only).
Every statistic comes from ``sgmod_study.study.stats``.
"""
