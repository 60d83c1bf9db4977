"""``python -m optuna_seer.cli``: the same as the ``optuna-seer`` command."""

from optuna_seer.cli.main import main

raise SystemExit(main())
