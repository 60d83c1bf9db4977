"""The ``optuna-seer`` command line: ``plan``, ``simulate``, ``profile``, ``report``, ..."""
