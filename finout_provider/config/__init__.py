"""The clusters file: one table of keys, the parsed clusters, the YAML text reader, the CronJob's variable names."""
