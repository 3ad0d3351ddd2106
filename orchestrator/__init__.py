"""The reconcile loop that runs this node's assigned replicas on Docker, probes and metering."""
