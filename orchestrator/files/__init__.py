"""Files the orchestrator holds: the evidence store, the receiving end of getfile, collect and
memdump (and the size limit it signs into them), and the library `put` and `runscript` take."""
