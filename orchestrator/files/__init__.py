"""Files the orchestrator holds: the evidence store, the receiving end of getfile, and the
library `put` and `runscript` take."""
