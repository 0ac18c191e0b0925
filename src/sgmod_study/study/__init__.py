"""Studies as data: ``conf/study/<name>.yaml`` declares a study's fixed setup, parts, contrasts and
report; this package runs its parts (``runner``), keeps their records (``record``, ``export``),
chooses the configurations its confirm parts retrain (``choose``) and writes its report from the
records alone (``stats``, ``figures``, ``report``). Reading and reporting import no torch."""
