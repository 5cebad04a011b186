"""Operations: what operators run and see (status, rebuild, reconcile, restore, dead letters,
retention, health, metrics, admin) and the deployment files."""
