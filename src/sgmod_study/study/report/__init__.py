"""A study's report from its records alone (no training, no torch): ``document.write_report``.

One module per section, each with a ``compute`` (plain data from the record) and a ``render``
(Markdown lines and figures). The classifier's: ``controls``, ``travel``, ``sweeps``,
``importance``, ``confirm``; the GAN's: ``length``, ``stability``, ``trajectories``,
``equal_budget``, ``samples``, ``quality``, ``contrasts``. ``paired`` formats paired differences
and their verdicts, ``rows`` and ``outcomes`` (a GAN run's result and failure) read the rows,
``figures`` draws (matplotlib only). Every statistic comes from ``sgmod_study.study.stats``.
"""
