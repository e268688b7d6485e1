"""Hyperparameter tuning with Hydra's Optuna sweeper (configs/hparams_search/): a study kept in
SQLite that a second command continues, and its plots beside the trials."""
