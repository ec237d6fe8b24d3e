"""The tamper-evident audit stream: the log and its signatures, the witness, checkpoints,
trimming and the export file."""
